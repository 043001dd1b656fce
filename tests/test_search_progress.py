"""What a search tells a person: the plan and a measured estimate before it starts, a plain progress line at a
steady interval without a terminal, and on Ctrl-C one line saying how to resume."""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from searchers.progress import SearchProgress
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


REQUEST = SearchRequest("both", "smoke", resolve_config("smoke"), "x", Path("x.json"), Path("run"), processes=1)


def reporting(every: float = 30.0) -> tuple[SearchProgress, Clock, io.StringIO]:
    """A progress without a terminal on a fake clock, with estimates of 100 s per stage (1 s a cell step,
    2 s a path step)."""
    clock, stream = Clock(), io.StringIO()
    progress = SearchProgress(REQUEST, plan=True, show=True, every=every, clock=clock, stream=stream)
    progress("data", dict(images_per_half=4, steps_per_epoch=10, done={}))
    progress("estimate", dict(estimate=StageEstimate("cell", 10, 0, 10, weight_step_s=1.0, bilevel_step_s=1.0)))
    progress("estimate", dict(estimate=StageEstimate("path", 5, 0, 10, weight_step_s=2.0, bilevel_step_s=2.0)))
    return progress, clock, stream


def step(progress: SearchProgress, n: int, stage: str = "cell") -> None:
    progress.step(dict(stage=stage, epoch=n // 10 + 1, epochs=10, step=n, total=100, loss=None if n == 0 else 1.5))


def test_without_a_terminal_a_line_comes_at_a_steady_interval_with_an_eta_that_follows_the_pace():
    progress, clock, stream = reporting()
    plan = stream.getvalue().splitlines()
    assert plan[-1].startswith("  estimated duration on this machine: about 3 min (")  # 100 s + 100 s
    step(progress, 0)
    for n in range(1, 100):  # the machine runs at half the estimated speed: 2 s a step
        clock.now += 2.0
        step(progress, n)
    lines = stream.getvalue().splitlines()[len(plan) :]
    assert len(lines) == 1 + 198 // 30  # the first report, then one every 30 s
    assert lines[0] == "cell search: epoch 1/10, step 0/100, loss -, elapsed 0.0 s, ETA 3 min"  # the estimate as is
    assert 1.7 < progress.pace.ratio < 2.0  # on its way to the pace of the steps
    for n in range(0, 50):  # the path stage, at the same pace: 4 s a step of 2 s
        clock.now += 4.0 if n else 30.0  # a stage's first report follows unpredicted work (decoding, plots)
        step(progress, n, "path")
    assert progress.pace.ratio == pytest.approx(2.0, rel=0.05)  # a lasting pace is followed all the way
    assert progress.eta("path", 49) == pytest.approx(2.0 * 2.0, rel=0.05)


def test_the_eta_does_not_swing_with_slow_first_steps_or_a_stall():
    progress, clock, _ = reporting()
    step(progress, 0)
    etas = []
    for n in range(1, 60):
        clock.now += 5.0 if n <= 3 or n == 30 else 1.0  # slow first steps (cold caches) and one stall
        step(progress, n)
        etas.append(progress.eta("cell", n))
    moves = [abs(b / a - 1) for a, b in zip(etas, etas[1:])]
    assert max(moves) < 0.1  # no report moves the ETA by a tenth
    assert etas[-1] == pytest.approx(41 + 100, rel=0.15)  # back near the estimate once the pace is steady


def test_a_resumed_plan_counts_only_what_is_left():
    clock, stream = Clock(), io.StringIO()
    progress = SearchProgress(REQUEST, plan=True, show=False, clock=clock, stream=stream)
    progress("data", dict(images_per_half=4, steps_per_epoch=10, done={"cell": 100, "path": 25}))
    progress("estimate", dict(estimate=StageEstimate("cell", 10, 0, 10, weight_step_s=1.0, bilevel_step_s=1.0)))
    progress("estimate", dict(estimate=StageEstimate("path", 5, 0, 10, weight_step_s=2.0, bilevel_step_s=2.0)))
    lines = stream.getvalue().splitlines()
    assert (
        "  resumed: cell 10 epochs and 0 steps, path 2 epochs and 5 steps done; the estimate counts what is left"
        in lines
    )
    assert any(line.startswith("  path stage: 5 epochs (0 of weights alone), 3 left, about 50 s") for line in lines)
    assert lines[-1].startswith("  estimated duration on this machine: about 50 s (")  # 25 path steps of 2 s


def test_the_plan_warns_before_the_search_when_the_target_is_below_what_the_space_can_emit():
    request = SearchRequest(
        "both", "smoke", resolve_config("smoke"), "x", Path("x.json"), Path("run"), latency_target_ms=20.0
    )
    stream = io.StringIO()
    progress = SearchProgress(request, plan=True, show=True, clock=Clock(), stream=stream)
    progress("latency-ready", dict(target_ms=20.0, fastest_ms=85.25))
    assert stream.getvalue().startswith(
        "warning: the latency target 20.0 ms is below the fastest network this search space can emit "
        "(at least 85.2 ms predicted at 1x3x512x1024)"
    )
    stream.truncate(0)
    progress("latency-ready", dict(target_ms=90.0, fastest_ms=85.25))
    assert "warning" not in stream.getvalue()


def test_latency_profiling_says_what_it_times_and_how_long_it_has_left():
    clock, stream = Clock(), io.StringIO()
    progress = SearchProgress(REQUEST, plan=True, show=True, every=30.0, clock=clock, stream=stream)
    table = SimpleNamespace(target=SimpleNamespace(threads=2), passes=3, path=None)
    progress(
        "latency-profile",
        dict(profile=SimpleNamespace(table=table, cached=False, missing=[1] * 10, calibrate_on=[1, 2])),
    )
    for done in range(1, 31):  # 10 units x 3 sweeps, 2 s each
        clock.now += 2.0
        progress("latency-progress", dict(phase="units", done=done, total=30))
    for done in range(1, 7):  # 2 networks x 3 rounds, 5 s each
        clock.now += 5.0
        progress("latency-progress", dict(phase="calibration", done=done, total=6))
    lines = stream.getvalue().splitlines()
    assert lines[0] == (
        "  latency profile of the search space at 1x3x512x1024, 2 threads: first, 10 units to time in 3 sweeps, "
        "then 2 networks timed whole (progress follows)"
    )
    assert lines[1:] == [
        "latency profile: units 1/30, elapsed 2.0 s, ETA of the units 58 s",
        "latency profile: units 16/30, elapsed 32 s, ETA of the units 28 s",
        "latency profile: units 30/30, elapsed 60 s, ETA of the units 0.0 s",
        "latency profile: calibration 1/6, elapsed 5.0 s, ETA of the calibration 25 s",
        "latency profile: calibration 6/6, elapsed 30 s, ETA of the calibration 0.0 s",
    ]
    progress("latency-profile", dict(profile=SimpleNamespace(table=table, cached=True, missing=[], calibrate_on=[])))
    assert (
        stream.getvalue()
        .splitlines()[-1]
        .startswith("  latency profile of the search space at 1x3x512x1024, 2 threads: cached")
    )


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


@pytest.mark.slow  # seconds of subprocesses or training; the default suite keeps a faster check of the same path
def test_without_a_terminal_the_plan_then_plain_progress_and_ctrl_c_says_how_to_resume(tmp_path):
    first, _, run_dir = _interrupted_search(tmp_path)
    assert first.returncode == 130, first.stderr[-2000:]
    err = first.stderr.strip().splitlines()
    assert err[0] == "search plan: stage cell (cell), budget smoke, seed 0"
    assert "  cell stage: 500 epochs (1 of weights alone)" in err  # the fixed part, before anything is loaded
    assert "  timing the cell stage on this machine: a few weight and architecture steps on one batch ..." in err
    assert any(line.startswith("  cell stage: 500 epochs (1 of weights alone), about ") for line in err)
    assert any(line.startswith("  estimated duration on this machine: about ") for line in err)
    assert f"  spec -> {run_dir / 'stopped.json'}" in err and any(f"  run folder -> {run_dir} " in x for x in err)
    progress = [line for line in err if line.startswith("cell search: ")]
    assert progress[0].startswith("cell search: epoch 0/500, step 0/500, loss -, elapsed ") and "ETA" in progress[0]
    assert "Traceback" not in first.stderr and "\x1b[" not in first.stderr  # no terminal codes in a log
    assert err[-1].startswith(f"rspnet-zoo: interrupted; checkpoint-cell.pt in {run_dir} holds the last checkpoint")
    command = _resume_command(first)
    assert command.endswith(" --resume") and f"--run-dir {run_dir}" in command
    assert not (run_dir / "stopped.json").exists()  # no spec: the search did not finish


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
