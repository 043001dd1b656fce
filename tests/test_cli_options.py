"""Every number on the command line is range-checked as it is parsed (``rspnet_zoo.cli.options``): NaN,
infinities, negatives and values above a stated cap are one usage-error line, before torch loads or any
work starts. Regression cases of issue 30: ``train --lr inf``, ``search --latency-target nan`` and ``-1``,
negative and huge seeds, ``data sample --size 99999x99999``, ``bench --size 99999x99999``."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st

from rspnet_zoo.cli import options
from rspnet_zoo.cli.app import command
from rspnet_zoo.spec.models import MAX_CLASSES

ROOT = Path(__file__).parents[1]
TINY = ROOT / "tests" / "data" / "tiny_net.json"
QUICK = settings(max_examples=300, deadline=None)
NUMBER_TEXT = (
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e999", "-0", "0x10", "1_000", " 3 ", "", "two", "2**40"])
    | st.integers(-(2**70), 2**70).map(str)
    | st.floats(allow_nan=True, allow_infinity=True).map(repr)
)
PARSERS = [options.SEED, options.BATCH, options.PROCESSES, options.COUNT, options.INDEX, options.CLASSES]
PARSERS += [options.FRACTION, options.LEARNING_RATE, options.MILLISECONDS]


@QUICK
@given(parser=st.sampled_from(PARSERS), text=NUMBER_TEXT)
def test_a_number_is_finite_and_in_its_range_or_a_usage_error(parser, text):
    try:
        value = parser(text)
    except typer.BadParameter as e:
        assert "\n" not in e.format_message()
        return
    assert isinstance(value, parser.kind) and math.isfinite(value)
    assert (parser.low < value if parser.low_open else parser.low <= value) and value <= parser.high


@QUICK
@given(text=st.sampled_from(["99999x99999", "0x5", "8x", "x8", "-1", "1e3", "8x8x8", "８"]) | st.text(max_size=12))
def test_a_size_is_two_sides_within_the_cap_or_a_usage_error(text):
    try:
        size = options.parse_size(text)
    except typer.BadParameter as e:
        assert "\n" not in e.format_message()
        return
    assert all(1 <= side <= options.MAX_SIDE for side in size)


def test_the_caps_are_the_ones_the_library_states():
    from rspnet_zoo.data.files import MAX_IMAGE_PIXELS

    assert options.MAX_CLASSES == MAX_CLASSES
    assert options.MAX_IMAGE_PIXELS == MAX_IMAGE_PIXELS


def _unchecked_numbers():
    """Every option of every command whose value is a number not parsed by one of ``options``' parsers."""
    todo = [((), command())]
    while todo:
        path, cmd = todo.pop()
        todo.extend(((*path, name), sub) for name, sub in getattr(cmd, "commands", {}).items())
        for param in cmd.params:
            described = param.type_descriptor
            if described.annotation in (int, float) and not isinstance(described.parameter_info.parser, options.Number):
                yield " ".join(path), param.opts[0]


# The search settings that map onto the budget config, which range-checks them itself (pydantic, before
# any work), and --nproc, which torchrun's launcher checks.
CONFIG_CHECKED = {"--epochs", "--batch-size", "--image-size", "--samples", "--layers", "--channels", "--partial"}
CONFIG_CHECKED |= {"--order", "--skip-cap", "--path-layers", "--path-channels", "--topk", "--threshold"}


def test_every_numeric_option_goes_through_a_range_checked_parser():
    unchecked = [(c, o) for c, o in _unchecked_numbers() if not (c == "search rspnet" and o in CONFIG_CHECKED)]
    assert unchecked == []


CASES = [
    ("train", str(TINY), "--lr", "inf"),
    ("train", str(TINY), "--lr", "nan"),
    ("train", str(TINY), "--seed", "-1"),
    ("build", str(TINY), "--seed", str(2**64)),
    ("data", "sample", "x.png", "--size", "99999x99999"),
    ("data", "sample", "x.png", "--seed", "-5"),
    ("data", "sample", "x.png", "--size", "8192x8192"),
    ("bench", "rspnet_small", "--size", "99999x99999"),
    ("bench", "rspnet_small", "--size", "8192x8192", "--batch", "2"),
    ("predict", "rspnet_small", "x.png", "--out", "o", "--alpha", "nan"),
    ("search", "--latency-target", "nan"),
    ("search", "--latency-target", "-1"),
    ("search", "--latency-target", "inf"),
    ("search", "--method", "template", "--latency-target", "0"),
]


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_bad_numbers_are_one_usage_line_and_touch_nothing(run_cli, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(*args)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("rspnet-zoo: error: Invalid value for ") and "Traceback" not in err
    assert [p for p in os.listdir(tmp_path) if p != "zoo-home"] == []


def test_a_bad_latency_target_is_refused_before_torch_loads(tmp_path):
    """issue 30: `--latency-target nan` ran the search for minutes, then raised a pydantic traceback; `-1`
    was refused only after the plan and the timed probes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RSPNET_ZOO_HOME": str(tmp_path)}
    for value in ("nan", "-1"):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "rspnet_zoo", "search", "--latency-target", value],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        errors = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
        assert result.returncode == 2 and len(errors) == 1 and "--latency-target" in errors[0]
        imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if "|" in line}
        assert "torch" not in imported
