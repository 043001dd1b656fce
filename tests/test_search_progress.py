"""What a search tells a person: the plan and a measured estimate before it starts, a plain progress line at a
steady interval without a terminal, and on Ctrl-C one line saying how to resume."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from searchers.progress import SearchProgress, duration
from searchers.rspnet.budgets import resolve_config
from searchers.rspnet.estimate import StageEstimate
from searchers.rspnet.runner import SearchRequest

ROOT = Path(__file__).resolve().parents[1]


def test_an_estimate_prices_warm_up_steps_and_architecture_steps_apart():
    e = StageEstimate("cell", epochs=5, warmup_epochs=2, steps_per_epoch=10, weight_step_s=1.0, bilevel_step_s=3.0)
    assert e.seconds() == 20 * 1.0 + 30 * 3.0
    assert e.seconds(15, 25) == 5 * 1.0 + 5 * 3.0  # across the end of the warm-up
    assert e.seconds(30) == 20 * 3.0
    assert e.seconds(50) == 0


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_a_line_comes_at_a_steady_interval_with_an_eta_that_follows_the_pace(capsys):
    request = SearchRequest("both", "smoke", resolve_config("smoke"), "x", Path("x.json"), Path("run"))
    clock = Clock()
    progress = SearchProgress(request, plan=False, show=True, every=30.0, clock=clock)
    cell = StageEstimate("cell", 10, 0, 10, weight_step_s=1.0, bilevel_step_s=1.0)  # 100 s
    path = StageEstimate("path", 5, 0, 10, weight_step_s=2.0, bilevel_step_s=2.0)  # 100 s
    progress.estimates = {"cell": cell, "path": path}

    def step(n: int, stage: str = "cell") -> None:
        progress(dict(stage=stage, epoch=n // 10 + 1, epochs=10, step=n, total=100, loss=None if n == 0 else 1.5))

    step(0)
    for n in range(1, 50):  # the machine runs at half the estimated speed: 2 s a step
        clock.now += 2.0
        step(n)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 + 98 // 30  # the first report, then one every 30 s
    assert lines[0] == "cell search: epoch 1/10, step 0/100, loss -, elapsed 0.0 s, ETA 3 min"  # the estimate as is
    # at step 45 (90 s in): 55 cell steps + the path stage, all at twice the estimate: 2 * (55 + 100) s
    assert lines[-1] == f"cell search: epoch 5/10, step 45/100, loss 1.500, elapsed {duration(90)}, ETA {duration(310)}"


def _interrupt_after(args: list[str], env: dict, run_dir: Path, epochs: int) -> subprocess.CompletedProcess:
    """Run the CLI until its log.jsonl has ``epochs`` rows, then send SIGINT as Ctrl-C does."""
    # a test run from a background job (`pytest &`) inherits SIGINT ignored, and so would the search: restore it
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(
        [sys.executable, "-m", "rspnet_zoo", *args], env=env, stderr=subprocess.PIPE, text=True, preexec_fn=restore
    )
    log, deadline = run_dir / "log.jsonl", time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= epochs:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(args, proc.returncode, "", err)


def _interrupted_search(tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict, Path]:
    """A 500-epoch smoke search without a terminal, interrupted after its first epoch."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RSPNET_ZOO_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    run_dir = tmp_path / "run"
    argv = ["search", "--stage", "cell", "--budget", "smoke", "--epochs", "500", "--samples", "8", "--threads", "1"]
    argv += ["--run-dir", str(run_dir), "--name", "stopped"]
    return _interrupt_after(argv, env, run_dir, 1), env, run_dir


def _resume_command(interrupted: subprocess.CompletedProcess) -> str:
    return interrupted.stderr.strip().splitlines()[-1].split("`")[1]


def test_without_a_terminal_the_plan_then_plain_progress_and_ctrl_c_says_how_to_resume(tmp_path):
    first, _, run_dir = _interrupted_search(tmp_path)
    assert first.returncode == 130, first.stderr[-2000:]
    err = first.stderr.strip().splitlines()
    assert err[0] == "search plan: stage cell (cell), budget smoke, seed 0"
    assert any(line.startswith("  cell stage: 500 epochs (1 of weights alone), about ") for line in err)
    assert any(line.startswith("  estimated duration on this machine: about ") for line in err)
    assert f"  spec -> {run_dir / 'stopped.json'}" in err and any(f"  run folder -> {run_dir} " in x for x in err)
    progress = [line for line in err if line.startswith("cell search: ")]
    assert progress[0].startswith("cell search: epoch 0/500, step 0/500, loss -, elapsed ") and "ETA" in progress[0]
    assert "Traceback" not in first.stderr and "\x1b[" not in first.stderr  # no terminal codes in a log
    assert err[-1].startswith(f"rspnet-zoo: interrupted; checkpoint-cell.pt in {run_dir} holds the last finished epoch")
    command = _resume_command(first)
    assert command.endswith(" --resume") and f"--run-dir {run_dir}" in command
    assert not list(run_dir.glob("*.json"))  # no spec: the search did not finish


@pytest.mark.slow
def test_the_printed_resume_command_continues_where_ctrl_c_stopped(tmp_path):
    first, env, run_dir = _interrupted_search(tmp_path)
    done = len((run_dir / "log.jsonl").read_text().splitlines())
    words = shlex.split(_resume_command(first))
    assert words[0] == "rspnet-zoo"
    again = _interrupt_after([*words[1:], "--no-progress"], env, run_dir, done + 1)  # the printed command, as given
    assert again.returncode == 130, again.stderr[-2000:]
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) > done  # it went on where it stopped
