"""Rich tables fit an 80-column terminal with whole header words; --json stays complete."""

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from rspnet_zoo import SHIPPED
from rspnet_zoo.cli import output
from rspnet_zoo.cli.app import main

TINY = Path(__file__).parent / "data" / "tiny_net.json"
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
    """Every line of the tables fits; a line that names a path is printed whole, however long."""
    assert max(len(line) for line in text.splitlines() if not line.startswith("weights in /")) <= width
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


def _narrow(monkeypatch, width: int = 60) -> io.StringIO:
    """The CLI's people-facing console at ``width`` columns (as in a terminal of COLUMNS=60), into a buffer."""
    buffer = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=buffer, width=width, color_system=None))
    return buffer


CELL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.0123456789,", min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.lists(CELL, min_size=6, max_size=6), min_size=1, max_size=4),
    width=st.integers(20, 100),
    title=st.lists(CELL, min_size=1, max_size=8).map(" ".join),
)
def test_printed_tables_keep_every_cell_and_title_word_whole(rows, width, title):
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None)
    t = output.table(title)
    for i in range(6):
        t.add_column(f"column {i}", justify="right" if i else "left")
    for row in rows:
        t.add_row(*row)
    output.print_table(console, t)
    text = buffer.getvalue()
    assert "…" not in text
    lines = text.splitlines()
    for cell in [c for row in rows for c in row] + title.split():
        assert any(cell in line for line in lines), (cell, text)


def test_list_at_60_columns_names_every_architecture_whole(monkeypatch, capsys):
    buffer = _narrow(monkeypatch)
    with pytest.raises(SystemExit):
        main(["list"])
    lines = buffer.getvalue().splitlines()
    assert "…" not in buffer.getvalue()
    for name in SHIPPED:
        assert any(line.split()[:1] == [name] for line in lines)
    assert any(line.startswith("rspnet_small.synth ") for line in lines)


def test_a_narrow_table_keeps_a_long_name_in_its_title_whole():
    from rspnet_zoo.cli.train_commands import _print_metrics

    buffer = io.StringIO()
    metrics = dict(miou=0.5, mean_acc=0.5, fw_iou=0.5, pixel_acc=0.5, per_class_iou={"background": 0.5, "ring": 0.5})
    console = Console(file=buffer, width=60, color_system=None)
    _print_metrics(console, metrics, "rspnet_small.synthetic on synthetic val")
    assert any("rspnet_small.synthetic" in line for line in buffer.getvalue().splitlines())


def test_bench_at_60_columns_names_every_model_whole(monkeypatch, capsys):
    buffer = _narrow(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "rspnet_small", "nas_segm_arch0", "--size", "32x64", "--rounds", "1", "--threads", "1"])
    assert exit_.value.code == 0
    text = buffer.getvalue()
    assert "…" not in text and "1 thread," in text
    rows = [line.split()[0] for line in text.splitlines() if line.split()[:1] in (["rspnet_small"], ["nas_segm_arch0"])]
    assert rows == ["rspnet_small", "nas_segm_arch0"] * 2  # the timings and what each call costs


def test_train_prints_its_paths_and_load_hint_whole_at_60_columns(monkeypatch, capsys, tmp_path, zoo_home):
    buffer = _narrow(monkeypatch)
    run = tmp_path / "a-run-folder-with-a-long-name-that-passes-sixty-columns"
    args = ["train", str(TINY), "--crop", "32", "--length", "4", "--batch-size", "4", "--iterations", "1"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--out", str(run)])
    assert exit_.value.code == 0
    lines = buffer.getvalue().splitlines()
    assert f"run folder -> {run} (checkpoint, history.json, curves.png; --resume continues it)" in lines
    assert f"load them with timm.create_model('local-dir:{zoo_home / 'tiny_net.synthetic'}', pretrained=True)" in lines
