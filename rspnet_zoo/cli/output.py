"""One output mode per call: JSON on stdout for machines, rich for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)

JSON_OPTION_HELP = "Print the result as JSON on stdout."


def table(title: str) -> Table:
    """A table for an 80-column terminal: a rule under the header, no side borders, two spaces between columns."""
    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))


def emit(data: Any, human: Callable[[Console], None], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        human(console)


def error_line(message: str) -> None:
    """One plain line on stderr (no rich markup, so it reads the same in logs)."""
    print(f"rspnet-zoo: error: {message}", file=sys.stderr)
