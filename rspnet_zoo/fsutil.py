"""Atomic file writes: a temporary file beside the destination, renamed over it when complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import ZooError


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``dest``, on failure it is removed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(dest: str | Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def writable_output(dest: str | Path, folder: bool = False) -> Path:
    """Refuse, before any work is done, an output that cannot be written: a file where a folder is meant
    (or the reverse), a path under a file, or a place without write permission."""
    dest = Path(dest)
    if os.path.exists(dest):
        if folder and not dest.is_dir():
            raise ZooError(f"{dest}: is a file; name a folder to write into")
        if not folder and dest.is_dir():
            raise ZooError(f"{dest}: is a folder; name a file to write")
        where = dest if folder else dest.parent
    else:
        where = dest.parent
        while not os.path.exists(where):
            where = where.parent
        if not where.is_dir():
            raise ZooError(f"{dest}: cannot be written: {where} is a file, not a folder")
    if not os.access(where, os.W_OK | os.X_OK):
        raise ZooError(f"{dest}: cannot be written: no write permission in {where}")
    return dest
