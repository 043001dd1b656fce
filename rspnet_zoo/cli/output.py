"""One output mode per call: JSON on stdout for machines, rich for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.segment import Segments
from rich.table import Table

console = Console()
errors = Console(stderr=True)

JSON_OPTION_HELP = "Print the result as JSON on stdout."
ELLIPSIS = "…"  # what rich puts where it cuts a cell short
UNBOUNDED = 10_000


def table(title: str) -> Table:
    """A table for an 80-column terminal: a rule under the header, no side borders, two spaces between columns.
    It is at least as wide as the longest word of its title, which therefore wraps between words only."""
    return Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        min_width=max(map(len, title.split()), default=0),
    )


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` with every cell whole: at the console's width where rich lays it out without cutting
    a cell short (its '…'), else at the narrowest width where it does (the terminal wraps wider lines), so
    that a name or a number is never cut."""
    natural = Measurement.get(console, console.options.update_width(UNBOUNDED), table).maximum
    if natural <= console.width or not _cut(console, table, console.width):
        console.print(table)
        return
    low, high = console.width, natural  # _cut(low) holds, _cut(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _cut(console, table, middle) else (low, middle)
    lines = console.render_lines(table, console.options.update_width(high), pad=False, new_lines=True)
    console.print(Segments([segment for line in lines for segment in line]), soft_wrap=True, end="")


def _cut(console: Console, table: Table, width: int) -> bool:
    return any(ELLIPSIS in s.text for s in console.render(table, console.options.update_width(width)))


def emit(data: Any, human: Callable[[Console], None], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        human(console)


def error_line(message: str) -> None:
    """One plain line on stderr (no rich markup, so it reads the same in logs)."""
    print(f"rspnet-zoo: error: {message}", file=sys.stderr)


def warning_line(message: str) -> None:
    """One plain line on stderr about something that did not stop the command."""
    print(f"rspnet-zoo: warning: {message}", file=sys.stderr)
