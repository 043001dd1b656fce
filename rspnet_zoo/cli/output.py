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
from rich.table import Table

from rspnet_zoo.errors import printable

console = Console(markup=False, emoji=False, highlight=False)
errors = Console(stderr=True, markup=False, emoji=False, highlight=False)

JSON_OPTION_HELP = "Print the result as JSON on stdout."


def shown(value: object) -> str:
    """``value`` as text for one line of human output: control characters (newlines, escape sequences)
    written as Python escapes, everything else as it is."""
    return printable(str(value))


def table(title: str) -> Table:
    """A table for an 80-column terminal: a rule under the header, no side borders, two spaces between columns."""
    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))


def emit(data: Any, human: Callable[[Console], None], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        human(console)


def error_line(message: object) -> None:
    """One plain line on stderr, whatever the message holds (control characters escaped)."""
    print(f"rspnet-zoo: error: {shown(message)}", file=sys.stderr)
