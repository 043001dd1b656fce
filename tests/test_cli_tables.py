"""Rich tables fit an 80-column terminal with whole header words; --json stays complete."""

import io
import json

import pytest
from rich.console import Console

from rspnet_zoo import SHIPPED
from rspnet_zoo.cli import output
from rspnet_zoo.cli.app import main

LIST_HEADERS = ("name", "version", "weights", "classes", "params", "GFLOPs", "input")


def _run(monkeypatch, capsys, *args: str, width: int | None = None) -> str:
    buffer = io.StringIO()
    if width is not None:
        monkeypatch.setattr(output, "console", Console(file=buffer, width=width, color_system=None))
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    assert exit_.value.code == 0
    return buffer.getvalue() if width is not None else capsys.readouterr().out


def _fits(text: str, width: int) -> None:
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text


def test_list_fits_80_columns_with_whole_headers(monkeypatch, capsys):
    text = _run(monkeypatch, capsys, "list", width=80)
    _fits(text, 80)
    header = next(line for line in text.splitlines() if line.startswith("name"))
    assert header.split() == list(LIST_HEADERS)
    for name in SHIPPED:  # every row whole, name first
        assert any(line.split()[:1] == [name] for line in text.splitlines())


def test_show_fits_80_columns(monkeypatch, capsys):
    _fits(_run(monkeypatch, capsys, "show", "rspnet_small", width=80), 80)


def test_list_json_is_complete_whatever_the_width(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "40")
    rows = json.loads(_run(monkeypatch, capsys, "list", "--json"))
    assert [r["name"] for r in rows] == sorted(SHIPPED)
    for r in rows:
        g = SHIPPED[r["name"]]
        assert (r["version"], r["num_classes"], r["input_size"]) == (
            g.version,
            g.defaults.num_classes,
            list(g.defaults.input_size),
        )
        assert r["parameters"] > 0 and r["flops"] > 0
