"""Small text helpers shared by the messages and summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .spec import CellStep


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with '...'."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_repr(value: Any, limit: int = 60) -> str:
    """A value as an error message quotes it, shortened."""
    return shorten(repr(value), limit)


def step_text(step: CellStep) -> str:
    """A cell step as 'op(s<input>) + ...', how summaries and logs write it."""
    return " + ".join(f"{e.op}(s{e.input})" for e in step.edges)
