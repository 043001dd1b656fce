"""Reads that cannot exhaust memory: the byte caps hold on the bytes actually read (``fsutil.read_capped``),
so a device or a pipe that never ends is refused at the cap and a FIFO nobody writes does not block; and
what a spec that validates may cost to build is capped (``spec.plan.MAX_UNITS``), so a spec with every list
at its schema limit is refused by ``validate`` instead of running ``show`` out of memory (issue 30)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import read_capped
from rspnet_zoo.spec.io import MAX_SPEC_BYTES, genotype_from_dict
from rspnet_zoo.spec.plan import MAX_UNITS

ROOT = Path(__file__).parents[1]
QUICK = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@QUICK
@given(size=st.integers(0, 300), limit=st.integers(0, 300))
def test_a_file_is_read_whole_within_the_cap_or_refused(tmp_path_factory, size, limit):
    file = tmp_path_factory.mktemp("caps") / "f"
    file.write_bytes(os.urandom(size))
    try:
        data = read_capped(file, limit)
    except ZooError as e:
        assert size > limit and "\n" not in str(e)
        return
    assert size <= limit and data == file.read_bytes()


def _finishes(call, seconds: float = 20.0):
    """``call()``'s result, or a failure when it blocks longer than ``seconds``."""
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(result=_outcome(call)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert "result" in box, "the read blocked"
    return box["result"]


def _outcome(call):
    try:
        return call()
    except Exception as e:  # the test inspects it
        return e


def test_an_endless_device_or_pipe_is_cut_at_the_cap(tmp_path):
    assert isinstance(_finishes(lambda: read_capped("/dev/zero", 1 << 20)), ZooError)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert _finishes(lambda: read_capped(fifo, 1 << 20)) == b""  # nobody writes: empty, not a wait

    def write_for_ever():
        try:
            with open(fifo, "wb") as f:
                while True:
                    f.write(b"x" * 65536)
        except (BrokenPipeError, OSError):
            pass

    writer = threading.Thread(target=write_for_ever, daemon=True)
    writer.start()
    time.sleep(0.2)  # the writer has the FIFO open
    assert isinstance(_finishes(lambda: read_capped(fifo, 1 << 20)), ZooError)
    writer.join(10)


def test_a_folder_is_an_os_error():
    with pytest.raises(IsADirectoryError):
        read_capped(ROOT, 10)


@pytest.mark.parametrize("source", ["/dev/zero", "fifo", "folder", "loop"])
def test_validate_refuses_what_is_not_a_spec_file_in_one_line(run_cli, tmp_path, source):
    if source == "fifo":
        os.mkfifo(tmp_path / "fifo")
    elif source == "folder":
        (tmp_path / "folder").mkdir()
    elif source == "loop":
        os.symlink("loop", tmp_path / "loop")
    path = source if source.startswith("/") else str(tmp_path / source)
    code, out, err = _finishes(lambda: run_cli("validate", path))
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    if source == "/dev/zero":
        assert f"file is larger than {MAX_SPEC_BYTES // 2**20} MiB" in err


def maxed_spec(cell_nodes: int = 511) -> dict:
    """Every list at its schema limit: 64 cells of 16 steps of 16 edges, up to 512 nodes with two slots of
    16 paths each (with ``cell_nodes`` cell nodes after a stem)."""
    cells = {
        f"c{c}": {
            "steps": [
                {"edges": [{"input": min(e, s + 1), "op": "skip_connect"} for e in range(16)]} for s in range(16)
            ],
            "concat": list(range(2, 18)),
        }
        for c in range(64)
    }
    nodes = [{"id": "stem", "layer": "conv", "channels": 8, "reduction": 2, "inputs": [{"paths": [{"node": "input"}]}]}]
    for i in range(1, cell_nodes + 1):
        paths = [{"node": n["id"]} for n in nodes[-16:]]
        nodes.append(
            {"id": f"n{i}", "cell": f"c{i % 64}", "channels": 1, "reduction": 2, "inputs": [{"paths": paths}] * 2}
        )
    return {
        "format_version": 1,
        "name": "maxed",
        "description": "x" * 4000,
        "cells": cells,
        "network": {"nodes": nodes},
        "head": {"type": "fusion", "inputs": [nodes[-1]["id"]], "channels": 8},
        "defaults": {"num_classes": 9, "input_size": [3, 64, 64]},
    }


def units(doc: dict) -> int:
    """What ``spec.plan`` counts: every node, its paths, and the edges of its cell."""
    edges = {name: sum(len(step["edges"]) for step in cell["steps"]) for name, cell in doc["cells"].items()}
    return sum(
        1 + sum(len(slot["paths"]) for slot in n["inputs"]) + edges.get(n.get("cell"), 0)
        for n in doc["network"]["nodes"]
    )


FITS = max(n for n in range(1, 40) if units(maxed_spec(n)) <= MAX_UNITS)  # the largest maxed_spec under the cap


@pytest.mark.slow  # seconds of subprocesses or training; the default suite keeps a faster check of the same path
def test_the_unit_cap_admits_the_largest_spec_under_it(run_cli, tmp_path):
    genotype_from_dict(maxed_spec(FITS))
    over = maxed_spec(FITS + 1)
    spec = tmp_path / "over.json"
    spec.write_text(json.dumps(over))
    code, out, err = run_cli("validate", str(spec))
    assert code == 2 and err.count("\n") == 1
    expected = (
        f"/network: the network would have {units(over):,} units (nodes, paths, cell edges), at most {MAX_UNITS:,}"
    )
    assert expected in err


@pytest.mark.slow
def test_a_spec_with_every_list_at_its_limit_is_refused_by_validate(run_cli, tmp_path):
    """issue 30: such a spec validated, then `show` ran out of memory after 100 s."""
    spec = tmp_path / "maxed.json"
    spec.write_text(json.dumps(maxed_spec()))
    for command in ("validate", "show"):
        code, out, err = run_cli(command, str(spec))
        assert code == 2 and out == "" and err.count("\n") == 1
        assert "/network: the network would have 147,441 units (nodes, paths, cell edges)" in err


@pytest.mark.slow
def test_a_spec_at_the_unit_cap_is_shown_within_limits(tmp_path):
    """``show`` of the largest spec under the cap: under 4 GiB of memory and 10 minutes on a shared CPU."""
    spec = tmp_path / "at_cap.json"
    spec.write_text(json.dumps(maxed_spec(FITS)))

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "RSPNET_ZOO_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-m", "rspnet_zoo", "show", str(spec), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        preexec_fn=limit_memory,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["name"] == "maxed"


def test_a_full_disk_while_saving_weights_is_one_line(run_cli, tmp_path):
    """issue 30: a full disk during a rebuild raised a SafetensorError traceback."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("needs a small tmpfs (mount as root)")
    try:
        code, out, err = run_cli("build", "rspnet_small", "--out", str(disk))
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert "No space left on device" in err
        assert os.listdir(disk) == []  # nothing half-written
    finally:
        subprocess.run(["umount", str(disk)], check=True)
