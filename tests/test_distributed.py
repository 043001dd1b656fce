"""search, train and eval under torchrun (``--nproc 2``, gloo on CPU) against one process with the same global batch.

Without BatchNorm N processes give the one-process result to float rounding (``distributed_worker.py``).
With it every rank normalises with its own share of the batch, so the runs agree to a tolerance: the
logged losses within 1% (search, per-process batch 8) or 2% (training, per-process batch 4), and the
smoke search decodes the same network. Evaluation has no such term: its metrics are equal exactly.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import distributed_worker
import pytest
import torch

from rspnet_zoo.cli.parallel import without_nproc
from rspnet_zoo.spec.io import load_spec

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "data" / "tiny_net.json"
SMOKE = ("search", "--budget", "smoke", "--samples", "32", "--no-progress")


def start(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    """``python -m rspnet_zoo ARGS`` in a session of its own, so that the whole process tree can be ended."""
    environ = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **env)
    return subprocess.Popen(
        [sys.executable, "-m", "rspnet_zoo", *args],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, out, err


def network(spec: Path) -> dict:
    return load_spec(spec).model_dump(mode="json", exclude={"name", "description", "provenance"})


def losses(run_dir: Path) -> list[float]:
    return [row["train_loss"] for row in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())]


@pytest.mark.slow  # seconds of training; the default suite keeps a faster check of the same path
def test_two_process_search_matches_one_process(tmp_path, run_cli, one_torch_thread):
    code, out, err = finish(
        start([*SMOKE, "--batch-size", "8", "--nproc", "2", "--out", "two.json", "--json"], tmp_path)
    )
    assert code == 0, err
    summary = json.loads(out)  # rank 0 alone printed: stdout holds one JSON document
    assert summary["parallel"] == "global batch 16 = 8 per process x 2 processes (gloo)"
    two = tmp_path / "two.json"
    assert summary["parallel"] in load_spec(two).provenance.notes

    code, _, err = run_cli(*SMOKE, "--batch-size", "16", "--out", str(tmp_path / "one.json"))
    assert code == 0, err
    assert network(two) == network(tmp_path / "one.json")
    home = Path(os.environ["RSPNET_ZOO_HOME"]) / "searches"
    assert losses(home / "two") == pytest.approx(losses(home / "one"), rel=0.01)


@pytest.mark.slow
def test_the_documented_two_process_smoke_search_runs_as_written_and_its_reproduce_line_reproduces_it(tmp_path):
    """`rspnet-zoo search --stage both --budget smoke --nproc 2`: the budget's global batch split over the
    processes; the printed command (which names --nproc) run again elsewhere writes the very same spec."""
    args = ["search", "--stage", "both", "--budget", "smoke", "--nproc", "2"]
    code, out, err = finish(start([*args, "--json"], tmp_path, RSPNET_ZOO_HOME=str(tmp_path / "a")))
    assert code == 0, err
    first = json.loads(out)
    assert first["parallel"] == "global batch 4 = 2 per process x 2 processes (gloo)"
    words = shlex.split(first["command"])
    assert words[:2] == ["rspnet-zoo", "search"] and "--nproc" in words
    assert load_spec(Path(first["out"])).provenance.command == first["command"]  # no folder in it
    code, out, err = finish(start([*words[1:], "--json"], tmp_path, RSPNET_ZOO_HOME=str(tmp_path / "b")))
    assert code == 0, err
    again = json.loads(out)
    assert again["name"] == first["name"] and again["sha256"] == first["sha256"]


@pytest.mark.slow
def test_bilevel_and_training_steps_equal_one_process_without_batchnorm(tmp_path):
    worker = Path(distributed_worker.__file__)
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker), tmp_path],
        env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    code, _, err = finish(proc)
    assert code == 0, err
    one = distributed_worker.results()
    for rank in (0, 1):
        two = torch.load(tmp_path / f"rank{rank}.pt")
        for case, state in one.items():
            for name, value in state.items():
                torch.testing.assert_close(two[case][name], value, rtol=0, atol=1e-6, msg=f"{case} {name}")


@pytest.mark.slow
def test_two_process_training_matches_one_process(tmp_path, run_cli):
    common = ("train", str(TINY), "--iterations", "4", "--length", "16", "--crop", "32", "--lr", "0.05", "--json")
    code, out, err = finish(start([*common, "--batch-size", "4", "--nproc", "2", "--tag", "two"], tmp_path))
    assert code == 0, err
    two = json.loads(out)
    assert two["parallel"] == "global batch 8 = 4 per process x 2 processes (gloo)"
    code, out, err = run_cli(*common, "--batch-size", "8", "--tag", "one")
    assert code == 0, err
    one = json.loads(out)
    assert two["steps"] == one["steps"] == 4
    assert two["history"][0]["loss"] == pytest.approx(one["history"][0]["loss"], rel=0.02)


@pytest.mark.slow
def test_two_process_eval_equals_one_process_exactly(tmp_path, run_cli):
    code, _, err = run_cli("train", str(TINY), "--iterations", "2", "--length", "8", "--crop", "32", "--tag", "t")
    assert code == 0, err
    folder = str(Path(os.environ["RSPNET_ZOO_HOME"]) / "tiny_net.t")
    args = ["eval", folder, "--length", "11", "--batch-size", "3", "--json"]  # 11 images: shares of 6 and 5
    code, out, err = finish(start([*args, "--nproc", "2"], tmp_path))
    assert code == 0, err
    code, one, err = run_cli(*args)
    assert code == 0, err
    assert json.loads(out) == json.loads(one)


def rank_pid(launcher: int, rank: int) -> int | None:
    """The worker of ``rank`` among the launcher's children (torchrun sets RANK in their environment)."""
    for proc in Path("/proc").iterdir():
        try:
            parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
            if parent == str(launcher) and f"RANK={rank}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                return int(proc.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


@pytest.mark.slow
def test_killed_rank_stops_the_run_and_one_process_resumes_it(tmp_path, run_cli, monkeypatch):
    args = [*SMOKE, "--epochs", "8", "--out", "s.json", "--run-dir", "run"]
    proc = start([*args, "--batch-size", "8", "--nproc", "2"], tmp_path, RSPNET_ZOO_DIST_TIMEOUT="60")
    try:
        while not (tmp_path / "run" / "checkpoint-cell.pt").exists():
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        os.kill(rank_pid(proc.pid, 1), signal.SIGKILL)
    finally:
        code, _, err = finish(proc, timeout=120)  # the collective timeout (60 s) bounds it; a dead peer is seen at once
    assert code == 1
    lines = [line for line in err.strip().splitlines() if line.startswith("rspnet-zoo:")]  # after the plan
    assert len(lines) == 1 and "rank 1 of 2" in lines[0] and "SIGKILL" in lines[0] and "--resume" in lines[0], err
    assert err.strip().endswith(lines[0]) and "Traceback" not in err, err
    assert not (tmp_path / "s.json").exists()

    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(*args, "--batch-size", "16", "--resume", "--json")  # the same global batch, 1 process
    assert code == 0, err
    load_spec(tmp_path / "s.json")
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 9)) * 2


def test_nproc_is_taken_out_of_the_command_line_for_the_workers():
    args = ["search", "--nproc", "2", "--budget", "smoke", "--nproc=3", "--seed", "1"]
    assert without_nproc(args) == ["search", "--budget", "smoke", "--seed", "1"]


def test_backend_without_torchrun_is_refused(run_cli):
    code, _, err = run_cli("eval", "rspnet_small", "--backend", "gloo")
    assert code == 2
    assert err.strip() == "rspnet-zoo: error: --backend applies to runs started by torchrun or --nproc"
