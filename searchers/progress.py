"""What a search tells a person: the plan and an estimate before it starts, progress while it runs, and on
Ctrl-C how to resume.

Progress is rich bars on a terminal; without one (a redirect, ``nohup``, CI) it is one plain line at a
steady interval: stage, epoch, step, loss, elapsed time and the ETA of the whole run. The ETA is the
estimate of what is left (``searchers.rspnet.estimate``), scaled by how the steps done so far compared with
their own estimate, so it follows the machine's load. Everything goes to stderr; stdout stays the result.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from searchers.rspnet.estimate import REPEATS, StageEstimate, estimate_search
from searchers.rspnet.runner import SearchData, SearchRequest

PLAIN_EVERY_S = 30.0


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_lines(request: SearchRequest, data: SearchData, estimates: list[StageEstimate], threads: int) -> list[str]:
    """The plan of a search, as printed before it starts."""
    cfg, half = request.config, len(data.parts["weights"])
    root = f" in {request.data_root}" if request.data_root else ""
    lines = [
        f"search plan: stage {request.stage} ({' then '.join(e.stage for e in estimates)}), "
        f"budget {request.budget}, seed {request.seed}",
        f"  data: {request.dataset}{root}, {half} + {half} images (weights + architecture), "
        f"{cfg.image_size}x{cfg.image_size} crops, batch {cfg.batch_size}, {data.steps_per_epoch} steps per epoch",
    ]
    for e in estimates:
        lines.append(
            f"  {e.stage} stage: {e.epochs} epochs ({e.warmup_epochs} of weights alone), about {duration(e.seconds())} "
            f"({e.weight_step_s:.2f} s per weight step, {e.bilevel_step_s:.2f} s with the architecture step)"
        )
    total = sum(e.seconds() for e in estimates)
    resumed = "; a resumed search skips the epochs already done" if request.resume else ""
    lines += [
        f"  estimated duration on this machine: about {duration(total)} "
        f"(from {REPEATS} timed steps of each kind per stage, torch threads: {threads}{resumed})",
        f"  spec -> {request.out}",
        f"  run folder -> {request.run_dir} (checkpoints, log.jsonl, plots)",
    ]
    return lines


class SearchProgress:
    """The CLI's ``on_start`` and ``on_step`` for ``runner.search``. ``plan``: print the plan and estimate;
    ``show``: report progress, with ``bars`` (a rich Progress, not started) on a terminal, else plain lines."""

    def __init__(
        self,
        request: SearchRequest,
        plan: bool,
        show: bool,
        bars=None,
        threads: Callable[[], int] = lambda: 1,
        every: float = PLAIN_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.request, self.plan, self.show, self.bars = request, plan, show, bars
        self.threads, self.every, self.clock = threads, every, clock
        self.estimates: dict[str, StageEstimate] = {}
        self.started: dict[str, tuple[float, int]] = {}  # stage -> (clock, step) of its first report
        self.tasks: dict[str, int] = {}
        self.began: float | None = None
        self.last_line: float | None = None

    def start(self, data: SearchData) -> None:
        if self.plan:
            estimates = estimate_search(self.request, data)
            self.estimates = {e.stage: e for e in estimates}
            for line in plan_lines(self.request, data, estimates, self.threads()):
                print(line, file=sys.stderr, flush=True)
        if self.show and self.bars is not None:
            self.bars.start()

    def eta(self, stage: str, step: int) -> float | None:
        """Seconds left in the whole run, or None without an estimate."""
        if stage not in self.estimates:
            return None
        since, first = self.started[stage]
        e = self.estimates[stage]
        predicted = e.seconds(first, step)
        scale = (self.clock() - since) / predicted if step > first and predicted > 0 else 1.0
        later = list(self.estimates)[list(self.estimates).index(stage) + 1 :]
        return scale * (e.seconds(step) + sum(self.estimates[s].seconds() for s in later))

    def __call__(self, s: dict) -> None:
        if not self.show:
            return
        now = self.clock()
        self.began = now if self.began is None else self.began
        first = s["stage"] not in self.started
        if first:
            self.started[s["stage"]] = (now, s["step"])
        loss = "-" if s["loss"] is None else f"{s['loss']:.3f}"
        if self.bars is not None:
            if first:
                self.tasks[s["stage"]] = self.bars.add_task(f"{s['stage']} search", total=s["total"])
            description = f"{s['stage']} search, epoch {s['epoch']}/{s['epochs']}, loss {loss}"
            self.bars.update(self.tasks[s["stage"]], completed=s["step"], description=description)
            return
        if first or s["step"] == s["total"] or now - self.last_line >= self.every:
            self.last_line = now
            eta = self.eta(s["stage"], s["step"])
            print(
                f"{s['stage']} search: epoch {s['epoch']}/{s['epochs']}, step {s['step']}/{s['total']}, loss {loss}, "
                f"elapsed {duration(now - self.began)}, ETA {'?' if eta is None else duration(eta)}",
                file=sys.stderr,
                flush=True,
            )

    def stop(self) -> None:
        if self.bars is not None:
            self.bars.stop()


class SampleProgress:
    """The template search's ``on_sample`` without a terminal: a plain line at a steady interval, the ETA
    from the pace of the samples this process has finished."""

    def __init__(self, every: float = PLAIN_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.every, self.clock = every, clock
        self.began = clock()
        self.done_before: int | None = None  # samples a resumed search had already
        self.last_line: float | None = None

    def __call__(self, row: dict, total: int) -> None:
        now, done = self.clock(), row["index"] + 1
        if self.done_before is None:
            self.done_before = row["index"]
        if self.last_line is not None and now - self.last_line < self.every and done < total:
            return
        self.last_line = now
        pace = (now - self.began) / (done - self.done_before)
        cached = " (cached)" if row["cached"] else ""
        print(
            f"template search: sample {done}/{total}, reward {row['reward']:.3f}{cached}, "
            f"elapsed {duration(now - self.began)}, ETA {duration(pace * (total - done))}",
            file=sys.stderr,
            flush=True,
        )


def interrupted_line(run_dir: Path, command: str) -> str:
    """What an interrupted search says: how to resume it, or that there is nothing to resume yet."""
    checkpoints = sorted(p.name for p in run_dir.glob("checkpoint-*.pt")) if run_dir.is_dir() else []
    if not checkpoints:
        return f"interrupted before the first epoch was saved; nothing to resume: `{command}` starts again"
    return (
        f"interrupted; {', '.join(checkpoints)} in {run_dir} holds the last finished epoch: "
        f"`{command} --resume` continues it"
    )
