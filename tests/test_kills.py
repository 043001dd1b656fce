"""SIGKILL ``build``, ``train`` and ``search`` at random moments: after every kill each final file is either
absent or complete (a weight file whose sha256 verifies, a checkpoint that loads, a spec that validates),
and rerunning (``--resume`` where a checkpoint exists) ends with the same result as an uninterrupted run.

The commands run in processes forked from a forkserver that has imported the CLI already, so a kill lands
in the work, not in the seconds of importing torch. Each command gets four seeds of kill moments, and each
seed kills three runs in a row (each rerun resumes what the killed one left) before a last run completes:
the first and third at a random moment of an uninterrupted run's time, the second just after a temporary
file or folder appears (while it is written). 36 kill attempts; at least 21 must land (7 per command).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = Path(__file__).parent / "data" / "tiny_net.json"
PRELOAD = [
    "rspnet_zoo.cli.app",
    "rspnet_zoo.training.tasks",
    "rspnet_zoo.zoo.folder",
    "rspnet_zoo.training.loop",
    "searchers.rspnet.runner",
]
SEEDS = (0, 1, 2, 3)
KILLS_PER_SEED = 3


def _cli(args: list[str], home: str, log: str) -> None:
    """A forked child: the CLI with its output in ``log``; its exit code is the command's."""
    import torch

    from rspnet_zoo.cli.app import main

    os.environ["RSPNET_ZOO_HOME"] = home
    torch.set_num_threads(1)
    with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        main(args)


def _nothing() -> None:
    pass


@pytest.fixture(scope="module")
def forkserver():
    """Started (and its imports done) before any run is timed."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    warm = ctx.Process(target=_nothing)
    warm.start()
    warm.join()
    return ctx


# --- what a complete file is -----------------------------------------------------------------------------


def complete_folder(folder: Path) -> str | None:
    """The tensors' sha256 of a built folder, which must be whole; None when there is none."""
    from rspnet_zoo.zoo.weights import read_weights

    if not folder.exists():
        return None
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"], folder
    json.loads((folder / "config.json").read_text())
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "\n# " in card  # the Hub front matter, then the card
    return read_weights(folder / "model.safetensors")[1]["tensors_sha256"]  # refuses partial data


def complete_checkpoint(file: Path) -> None:
    from rspnet_zoo.training.loop import load_checkpoint

    if file.exists():
        assert isinstance(load_checkpoint(file), dict)


def complete_spec(file: Path) -> dict | None:
    """A written spec must validate; compared without provenance (its wall time differs run to run)."""
    from rspnet_zoo.spec.io import canonical_dict, load_spec

    if not file.exists():
        return None
    doc = canonical_dict(load_spec(file))
    doc.pop("provenance", None)
    return doc


def visible(folder: Path) -> list[str]:
    """Entries of ``folder`` other than the hidden temporaries the atomic writers use."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


@dataclass
class Job:
    """One command: its arguments (with --resume once there is a checkpoint), and its final files."""

    name: str
    work: Path = field(default_factory=Path)

    def args(self) -> list:
        w = self.work
        if self.name == "build":
            return ["build", "rspnet_small", "--out", w / "zoo"]
        if self.name == "train":
            resume = ["--resume"] if (w / "run" / "checkpoint.pt").exists() else []
            return ["train", TINY, "--epochs", "3", "--length", "8", "--batch-size", "4", "--crop", "32",
                    "--out", w / "run", "--tag", "k", *resume]  # fmt: skip
        resume = ["--resume"] if list((w / "srun").glob("checkpoint-*.pt")) else []
        force = ["--force"] if (w / "spec.json").exists() else []
        return ["search", "--stage", "both", "--budget", "smoke", "--no-progress", "--seed", "0",
                "--out", w / "spec.json", "--run-dir", w / "srun", *resume, *force]  # fmt: skip

    def result(self):
        """What a run produced, after checking that every final file present is complete."""
        w = self.work
        if self.name == "build":
            assert set(visible(w / "zoo")) <= {"rspnet_small"}
            return complete_folder(w / "zoo" / "rspnet_small")
        if self.name == "train":
            complete_checkpoint(w / "run" / "checkpoint.pt")
            if (w / "run" / "history.json").exists():
                json.loads((w / "run" / "history.json").read_text())
            return complete_folder(w / "home" / "tiny_net.k")
        for file in (w / "srun").glob("checkpoint-*.pt"):
            complete_checkpoint(file)
        if (w / "srun" / "cell.json").exists():
            complete_spec(w / "srun" / "cell.json")
        return complete_spec(w / "spec.json")

    def temporaries(self) -> set[Path]:
        """The hidden temporaries of the atomic writers, in every folder the command writes to."""
        folders = [self.work / d for d in ("zoo", "home", "run", "srun")] + [self.work]
        return {p for d in folders if d.exists() for p in d.iterdir() if p.name.startswith(".")}


def run(ctx, job: Job, kill_after: float | None = None, on_write: float | None = None) -> bool:
    """Run the job's command; SIGKILL it after ``kill_after`` seconds, or ``on_write`` seconds after a new
    temporary file or folder appears, if it is still running then. Returns whether it was killed."""
    args = [str(a) for a in job.args()]
    proc = ctx.Process(target=_cli, args=(args, str(job.work / "home"), str(job.work / "log.txt")))
    before = job.temporaries()
    proc.start()
    if on_write is None:
        proc.join(kill_after)
    else:
        while proc.is_alive() and job.temporaries() <= before:
            time.sleep(0.005)
        proc.join(on_write)
    if proc.is_alive():
        proc.kill()
    proc.join()
    killed = proc.exitcode == -9  # 0 when it finished between the check and the kill
    if not killed:
        assert proc.exitcode == 0, (args, (job.work / "log.txt").read_text())
    return killed


@pytest.mark.parametrize("command", ["build", "train", "search"])
def test_killed_runs_leave_whole_files_and_rerun_to_the_same_result(forkserver, tmp_path, command):
    reference = Job(command, tmp_path / "reference")
    reference.work.mkdir()
    started = time.perf_counter()
    run(forkserver, reference)
    seconds = time.perf_counter() - started
    expected = reference.result()
    assert expected is not None

    kills = attempts = mid_write = leftovers = 0
    for seed in SEEDS:
        rng = random.Random(f"{command}-{seed}")
        job = Job(command, tmp_path / f"seed{seed}")
        job.work.mkdir()
        for i in range(KILLS_PER_SEED):
            attempts += 1
            before = job.temporaries()
            if i == 1:  # while a file or folder is being written
                killed = run(forkserver, job, on_write=rng.uniform(0.0, 0.05))
            else:
                killed = run(forkserver, job, kill_after=rng.uniform(0.05, 1.0) * seconds)
            kills += killed
            mid_write += killed and bool(job.temporaries() - before)
            outcome = job.result()  # every final file present is complete ...
            assert outcome in (None, expected)  # ... and, when the run got that far, the right one
        run(forkserver, job)
        assert job.result() == expected
        leftovers += len(job.temporaries())
    print(
        f"\n{command}: {kills} of {attempts} kills landed ({mid_write} left a temporary being written), all "
        f"survived; {leftovers} hidden temporaries left after the reruns"
    )
    assert kills >= 7  # of 12 per command: at least 21 in all
