"""Atomic writes: a temporary file or folder beside the destination, put in its place when complete.

Temporary names are ``.<dest name>.rspnet-tmp.<random><suffix>``, so the next writer that owns the folder
(it holds the folder's ``flock``, see ``locked``) can recognise and remove what a killed write left behind.
Outputs get the modes of a plain ``open``/``mkdir`` (0644/0755 under the usual umask), not mkstemp's 0600.

A built folder replaces an older one by ``renameat2(RENAME_EXCHANGE)`` (Linux 3.15+, through libc): the
two folders swap names in one step, so a reader always finds a whole build under the stable name. We chose
the exchange over a versioned folder behind a symlink because users and timm's ``local-dir:`` hold the
folder's own path, which then stays a plain folder. Where the call is missing (other systems, old libc)
or the file system refuses it, the old folder is renamed aside first and the new one renamed in: a gap of
two renames, but never a half-written folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from rspnet_zoo.errors import ZooError

TMP_TAG = "rspnet-tmp"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def temp_prefix(name: str) -> str:
    return f".{name}.{TMP_TAG}."


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publishable(path: Path) -> None:
    """A file 0666, a folder and its files 0777/0666, less the umask: what open() and mkdir() make."""
    mask = _umask()
    if path.is_dir():
        path.chmod(0o777 & ~mask)
        for f in path.iterdir():
            f.chmod((0o777 if f.is_dir() else 0o666) & ~mask)
    else:
        path.chmod(0o666 & ~mask)


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``dest``, on failure it is removed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(dest.name), suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _publishable(Path(tmp))
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(dest: str | Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; False where the system or file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it takes ``dest``'s place (see the module docstring)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dest.name), dir=dest.parent))
    try:
        yield tmp
        _publishable(tmp)
        if not dest.exists():
            tmp.rename(dest)
        elif not _exchange(tmp, dest):
            aside = Path(tempfile.mkdtemp(prefix=temp_prefix(dest.name), dir=dest.parent))
            dest.rename(aside / "previous")
            try:
                tmp.rename(dest)
            except BaseException:
                (aside / "previous").rename(dest)
                shutil.rmtree(aside, ignore_errors=True)
                raise
            tmp = aside
        # tmp now holds the previous build (or nothing): removed below
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` itself (made if missing), waiting for it: one writer in a
    zoo or run folder at a time, and no lock file left behind. The kernel drops the lock when its holder
    dies, so a killed writer never leaves it held."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def clean_leftovers(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders killed writes left in ``folder`` (only those of ``name``
    when given); call it holding the lock that makes this process their owner."""
    pattern = temp_prefix(name) + "*" if name else f".*.{TMP_TAG}.*"
    found = sorted(folder.glob(pattern)) if folder.is_dir() else []
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return found


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _stat(path: Path) -> os.stat_result | None:
    """``os.stat`` (symlinks followed), None where nothing is there (or a file stands where a folder should);
    a symlink loop, a name too long or a folder that may not be searched is one ZooError line."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise ZooError(f"{path}: {e.strerror}") from None


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def writable_output(
    dest: str | Path,
    folder: bool = False,
    *,
    replace: bool = True,
    avoid: Sequence[str | Path] = (),
    within: str | Path | None = None,
) -> Path:
    """The one check of every output path, done before any work; returns ``dest`` as given.

    ``dest`` is resolved (symlinks followed) and refused when it cannot or must not be written:
    a file where a folder is meant (or the reverse), a device node, FIFO or socket (never replaced), a path
    under a file or through a symlink loop, a place without write permission; an existing file unless
    ``replace`` (the user named it, or passed ``--force``); any of ``avoid`` (the command's own inputs and its
    other outputs); anything outside ``within`` (the folder the user named, for a file named inside it).
    """
    dest = Path(dest)
    found = _stat(dest)
    if found is not None:
        if folder and not stat.S_ISDIR(found.st_mode):
            raise ZooError(f"{dest}: is a file; name a folder to write into")
        if not folder and stat.S_ISDIR(found.st_mode):
            raise ZooError(f"{dest}: is a folder; name a file to write")
        if not folder and not stat.S_ISREG(found.st_mode):
            raise ZooError(f"{dest}: is {_kind(found.st_mode)}; outputs are regular files, and it is not replaced")
        if not folder and not replace:
            raise ZooError(f"{dest}: exists; pass --force to replace it")
    real = os.path.realpath(dest)
    for other in avoid:
        if real == os.path.realpath(other):
            raise ZooError(f"{dest}: is also {other}, which this command reads or writes; name another output")
    if within is not None and not _inside(real, os.path.realpath(within)):
        raise ZooError(f"{dest}: resolves to {real}, outside {within}")
    where = dest if found is not None and folder else dest.parent
    while _stat(where) is None and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise ZooError(f"{dest}: cannot be written: {where} is a file, not a folder")
    if not os.access(where, os.W_OK | os.X_OK):
        raise ZooError(f"{dest}: cannot be written: no write permission in {where}")
    return dest


def read_capped(path: str | Path, limit: int) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them: the cap holds on what is read, so a device
    (``/dev/zero``) or a pipe that never ends is refused after ``limit + 1`` bytes, and a FIFO nobody writes
    reads as empty instead of waiting. A folder, a missing or unreadable file raises OSError (the caller says
    which file); more than ``limit`` bytes raises ``ZooError``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    with os.fdopen(fd, "rb") as f:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        os.set_blocking(fd, True)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ZooError(f"{path}: larger than {_size(limit)}")
    return data


def _size(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit >= 2**20 and limit % 2**20 == 0 else f"{limit:,} bytes"
