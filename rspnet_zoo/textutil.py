"""Small text helpers shared by the messages and summaries."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with '...'."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_repr(value: Any, limit: int = 60) -> str:
    """A value as an error message quotes it, shortened."""
    return shorten(repr(value), limit)


def command_line(words: Sequence[str], options: dict[str, Any], settings: dict[str, Any] | None = None) -> str:
    """The shell line that reruns a job: ``words``, then ``--option value`` for each option given (a size
    tuple as HxW, a switched-on flag as ``--option`` alone), then ``--set key=JSON`` for each setting; how
    provenance and model cards record it."""
    parts = list(words)
    for key, value in options.items():
        if value is None or value is False:
            continue
        if value is True:
            parts.append(f"--{key.replace('_', '-')}")
            continue
        if isinstance(value, tuple):
            value = "x".join(map(str, value))
        parts += [f"--{key.replace('_', '-')}", str(value)]
    for key, value in (settings or {}).items():
        parts += ["--set", f"{key}={json.dumps(value)}"]
    return shlex.join(parts)
