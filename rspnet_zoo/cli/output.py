"""One output mode per call: JSON on stdout for machines, rich for people.

Text reaches people as text: the consoles interpret no markup, no emoji codes and highlight nothing, so a
spec description, a file name or a class name that looks like ``[bold]`` prints as written and cannot
crash the output. User-provided text in a human line goes through ``shown``, which escapes control
characters: a newline in an op name cannot start a line of its own. An error is one line (``error_line``).
"""

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

from rspnet_zoo.errors import printable

console = Console(markup=False, emoji=False, highlight=False)
errors = Console(stderr=True, markup=False, emoji=False, highlight=False)

JSON_OPTION_HELP = "Print the result as JSON on stdout."
ELLIPSIS = "…"  # what rich puts where it cuts a cell short
UNBOUNDED = 10_000


def shown(value: object) -> str:
    """``value`` as text for one line of human output: control characters (newlines, escape sequences)
    written as Python escapes, everything else as it is."""
    return printable(str(value))


def table(title: str) -> Table:
    """A table for an 80-column terminal: a rule under the header, no side borders, one space between columns.
    It is at least as wide as the longest word of its title, which therefore wraps between words only."""
    return Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=0,
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


def error_line(message: object) -> None:
    """One plain line on stderr, whatever the message holds (control characters escaped)."""
    print(f"rspnet-zoo: error: {shown(message)}", file=sys.stderr)


def warning_line(message: object) -> None:
    """One plain line on stderr about something that did not stop the command (control characters escaped)."""
    print(f"rspnet-zoo: warning: {shown(message)}", file=sys.stderr)
