"""What a search tells a person: its plan at once, what it measures while it does, an estimate before it
trains, progress while it runs, and on Ctrl-C how to resume. Torch-free, so the plan's first lines come
before torch loads.

The plan's fixed part comes from the request alone (``plan_head``). The rest follows the runner's events
(``searchers.rspnet.runner.EventHook``): the data, each stage's timed steps (said before they run), the
estimate, and with a latency target the profile of the search space (its size or "cached", its progress,
and a warning before the search when the target is below what the space can emit).

Progress is rich bars on a terminal; without one (a redirect, ``nohup``, CI) it is one plain line at a
steady interval: stage, epoch, step, loss, elapsed time and the ETA of the whole run. The ETA is the
estimate of what is left times ``Pace``: how the steps so far compared with their estimate, smoothed over
about a minute of predicted work, so that the first steps and a moment's stall move it a little and a
lasting change of pace all the way. Everything goes to stderr; stdout stays the result.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the runner's types, for annotations only: this module stays torch-free
    from searchers.rspnet.estimate import StageEstimate
    from searchers.rspnet.request import SearchRequest
    from searchers.template.request import TemplateSearchRequest

PLAIN_EVERY_S = 30.0
PACE_HORIZON_S = 60.0


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class Pace:
    """How long the work takes against its estimate: observed over predicted seconds, both summed with
    weights that halve every ``horizon_s`` x ln 2 seconds of predicted work, and started with ``horizon_s``
    seconds at the estimate's own pace. So the first steps (often slow: caches, allocation) and a moment's
    stall move it a little, and a lasting change of pace moves it all the way within a few horizons."""

    def __init__(self, horizon_s: float = PACE_HORIZON_S):
        self.horizon_s = horizon_s
        self.observed = self.predicted = horizon_s

    @property
    def ratio(self) -> float:
        return self.observed / self.predicted

    def update(self, observed_s: float, predicted_s: float) -> float:
        if predicted_s > 0:
            keep = math.exp(-predicted_s / self.horizon_s)
            self.observed = keep * self.observed + observed_s
            self.predicted = keep * self.predicted + predicted_s
        return self.ratio


def plan_head(request: SearchRequest) -> list[str]:
    """The plan's fixed part: what the request alone says, before anything is loaded."""
    cfg = request.config
    root = f" in {request.data_root}" if request.data_root else ""
    images = "all images" if cfg.samples is None else f"{cfg.samples} images"
    batch = f"global batch {request.global_batch}"
    if request.processes > 1:
        batch += f" = {cfg.batch_size} per process x {request.processes} processes"
    stages = {"cell": cfg.cell, "path": cfg.path}
    lines = [
        f"search plan: stage {request.stage} ({' then '.join(request.stages)}), budget {request.budget}, "
        f"seed {request.seed}",
        f"  data: {request.dataset}{root}, {images} of the train split, {cfg.image_size}x{cfg.image_size} crops, "
        f"{batch}",
        "  "
        + "; ".join(
            f"{s} stage: {stages[s].epochs} epochs ({stages[s].warmup_epochs} of weights alone)" for s in request.stages
        ),
    ]
    if request.encoder is not None:
        kept = "frozen" if request.freeze_encoder else "trained with them (its weights join every weight step)"
        lines.append(
            f"  encoder: timm's {request.encoder} under the searched cells and paths, {kept}; the timed steps "
            "below include it"
        )
    if request.latency_target_ms is not None:
        h, w = request.latency_size
        lines.append(
            f"  latency target: {request.latency_target_ms} ms at 1x3x{h}x{w}, priced by this machine's latency "
            f"profile of the search space"
        )
    if request.discards:
        lines.append(f"  --force: discards {request.discards}")
    lines += [
        f"  spec -> {request.out}",
        f"  run folder -> {request.run_dir} (checkpoints, log.jsonl, plots)",
    ]
    return lines


class SearchProgress:
    """The CLI's ``on_event`` and ``on_step`` for ``runner.search``. ``plan``: print the plan and estimate;
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
        stream: TextIO | None = None,
    ):
        self.request, self.plan, self.show, self.bars = request, plan, show, bars
        self.threads, self.every, self.clock = threads, every, clock
        self.stream = stream
        self.estimates: dict[str, StageEstimate] = {}
        self.done: dict[str, int] = {}  # stage -> steps a resume skips
        self.pace = Pace()
        self.last: tuple[str, int, float] | None = None  # (stage, step, clock) of the last step report
        self.tasks: dict[str, int] = {}
        self.began: float | None = None
        self.last_line: float | None = None
        self.profiled: tuple[str | None, float] = (None, clock())  # the profile's phase and when it began
        self.last_event = self.profiled[1]

    def say(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def head(self) -> None:
        """The plan's fixed part, at once."""
        if self.plan:
            for line in plan_head(self.request):
                self.say(line)

    def __call__(self, kind: str, details: dict) -> None:
        """``on_event``: the runner's events (module docstring)."""
        if kind in ("latency-profile", "latency-progress") or self.plan:
            getattr(self, "_" + kind.replace("-", "_"))(**details)

    def _data(self, images_per_half: int, steps_per_epoch: int, done: dict[str, int]) -> None:
        self.done = dict(done)
        self.say(
            f"  data loaded: {images_per_half} + {images_per_half} images (weights + architecture), "
            f"{plural(steps_per_epoch, 'step')} per epoch"
        )
        if done:
            spe = steps_per_epoch
            parts = [f"{s} {steps // spe} epochs and {steps % spe} steps" for s, steps in done.items()]
            self.say(f"  resumed: {', '.join(parts)} done; the estimate counts what is left")

    def _timing(self, stage: str) -> None:
        self.say(f"  timing the {stage} stage on this machine: a few weight and architecture steps on one batch ...")

    def _estimate(self, estimate: StageEstimate) -> None:
        e = self.estimates[estimate.stage] = estimate
        done = self.done.get(e.stage, 0)
        left = f", {e.epochs - done // e.steps_per_epoch} left" if done else ""
        if done >= e.total_steps:
            self.say(f"  {e.stage} stage: {e.epochs} epochs, done")
        else:
            self.say(
                f"  {e.stage} stage: {e.epochs} epochs ({e.warmup_epochs} of weights alone){left}, about "
                f"{duration(e.seconds(done))} ({e.weight_step_s:.2f} s per weight step, {e.bilevel_step_s:.2f} s "
                f"with the architecture step)"
            )
        if len(self.estimates) == len(self.request.stages):
            total = sum(x.seconds(self.done.get(x.stage, 0)) for x in self.estimates.values())
            self.say(
                f"  estimated duration on this machine: about {duration(total)} (from {e.repeats} timed steps of "
                f"each kind per stage, torch threads: {self.threads()})"
            )

    def _latency_profile(self, profile) -> None:
        self.profiled = (None, self.clock())  # (phase, when it began)
        if not self.plan:
            return
        h, w = self.request.latency_size
        where = f"at 1x3x{h}x{w}, {plural(profile.table.target.threads, 'thread')}"
        if profile.cached:
            self.say(f"  latency profile of the search space {where}: cached ({profile.table.path})")
            return
        calibration = (
            f", then {plural(len(profile.calibrate_on), 'network')} timed whole" if profile.calibrate_on else ""
        )
        self.say(
            f"  latency profile of the search space {where}: first, {plural(len(profile.missing), 'unit')} to time "
            f"in {profile.table.passes} sweeps{calibration} (progress follows)"
        )

    def _latency_progress(self, phase: str, done: int, total: int) -> None:
        """A line at once, then every ``every`` seconds and at the end of each phase; the ETA of the phase
        from its mean pace (its sweeps repeat the same units)."""
        now = self.clock()
        if self.profiled[0] != phase:  # a phase begins where the last one ended
            self.profiled, self.last_line = (phase, self.last_event), None
        self.last_event = now
        if not self.show or (self.last_line is not None and now - self.last_line < self.every and done < total):
            return
        self.last_line = now
        elapsed = now - self.profiled[1]
        self.say(
            f"latency profile: {phase} {done}/{total}, elapsed {duration(elapsed)}, "
            f"ETA of the {phase} {duration(elapsed / done * (total - done))}"
        )

    def _latency_ready(self, target_ms: float, fastest_ms: float | None) -> None:
        self.last_line = None
        if fastest_ms is None:
            return
        h, w = self.request.latency_size
        if fastest_ms > target_ms:
            faster = "" if self.request.budget == "mobile" else "; --budget mobile searches a space that can be fast"
            self.say(
                f"warning: the latency target {target_ms} ms is below the fastest network this search space can emit "
                f"(at least {fastest_ms:.1f} ms predicted at 1x3x{h}x{w}): the search will emit its fastest and miss "
                f"the target{faster}"
            )
        else:
            self.say(f"  latency: the space's fastest networks take at least {fastest_ms:.1f} ms predicted")

    def eta(self, stage: str, step: int) -> float | None:
        """Seconds left in the whole run, or None without an estimate."""
        if stage not in self.estimates:
            return None
        later = list(self.estimates)[list(self.estimates).index(stage) + 1 :]
        left = self.estimates[stage].seconds(step) + sum(self.estimates[s].seconds() for s in later)
        return self.pace.ratio * left

    def step(self, s: dict) -> None:
        """``on_step``: progress after each step (a bar, or a plain line every ``every`` seconds)."""
        if not self.show:
            return
        now = self.clock()
        self.began = now if self.began is None else self.began
        stage, step = s["stage"], s["step"]
        first = self.last is None or self.last[0] != stage
        if not first and stage in self.estimates:  # a stage's first report follows unpredicted work
            _, before, then = self.last
            self.pace.update(now - then, self.estimates[stage].seconds(before, step))
        self.last = (stage, step, now)
        loss = "-" if s["loss"] is None else f"{s['loss']:.3f}"
        eta = self.eta(stage, step)
        eta_text = "?" if eta is None else duration(eta)
        if self.bars is not None:
            if not self.tasks:  # started with the first step, after the plan's lines
                self.bars.start()
            if stage not in self.tasks:
                self.tasks[stage] = self.bars.add_task(f"{stage} search", total=s["total"])
            description = f"{stage} search, epoch {s['epoch']}/{s['epochs']}, loss {loss}, ETA {eta_text}"
            self.bars.update(self.tasks[stage], completed=step, description=description)
            return
        if first or step == s["total"] or now - self.last_line >= self.every:
            self.last_line = now
            self.say(
                f"{stage} search: epoch {s['epoch']}/{s['epochs']}, step {step}/{s['total']}, loss {loss}, "
                f"elapsed {duration(now - self.began)}, ETA {eta_text}"
            )

    def stop(self) -> None:
        if self.tasks:  # rich's stop() writes a newline even for bars never started
            self.bars.stop()


def template_plan_head(request: TemplateSearchRequest) -> list[str]:
    """The template search's plan, fixed part: what the request alone says, before anything is loaded."""
    cfg = request.config
    root = f" in {request.data_root}" if request.data_root else ""
    updates = math.ceil(cfg.architectures / cfg.strings_per_update)
    stem = (
        f"MobileNet-v2 blocks from {request.stem_weights}"
        if request.stem_weights
        else f"a substitute, trained {plural(cfg.stem_steps, 'step')} first"
    )
    lines = [
        f"template search plan: budget {request.budget}, seed {request.seed}, {plural(cfg.architectures, 'sample')} "
        f"in {plural(updates, 'PPO update')}, {plural(request.workers, 'worker')}",
        f"  data: {request.dataset}{root}, {cfg.images} images of the train split at {cfg.image_size}x{cfg.image_size} "
        f"(90% meta-train, 10% meta-val)",
        f"  each sample: M={cfg.templates} templates, N={cfg.blocks} blocks, trained {cfg.frozen_epochs} epochs on the "
        f"frozen stem + {cfg.end_to_end_epochs} end to end (batch {cfg.batch_size}); stem: {stem}",
    ]
    if request.latency_target_ms is not None:
        lines.append(f"  latency target: {request.latency_target_ms} ms, each sample measured on this machine")
    if request.discards:
        lines.append(f"  --force: discards {request.discards}")
    lines += [f"  spec -> {request.out}", f"  run folder -> {request.run_dir} (checkpoint, samples.jsonl, plots)"]
    return lines


class TemplateProgress:
    """The CLI's ``on_event`` and ``on_sample`` for the template search. ``plan``: print the estimate;
    ``show``: report progress, a bar on a terminal (``bars``, a rich Progress, started with the first
    sample), else a plain line at a steady interval. The ETA: the estimate of one sample's share of the
    time (its seconds over the workers) times the smoothed pace of the samples finished."""

    def __init__(
        self,
        plan: bool,
        show: bool,
        bars=None,
        every: float = PLAIN_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        stream: TextIO | None = None,
    ):
        self.plan, self.show, self.bars, self.every, self.clock, self.stream = plan, show, bars, every, clock, stream
        self.sample_s: float | None = None
        self.pace = Pace()
        self.began = self.then = clock()
        self.rows = 0  # recorded by this process
        self.task = None
        self.last_line: float | None = None

    def say(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def __call__(self, kind: str, details: dict) -> None:
        """``on_event``: 'timing' before the timed steps, 'estimate' (stem_s, sample_s: one sample on one
        worker, samples: left to train, workers)."""
        if kind == "estimate":
            self.sample_s = details["sample_s"] / details["workers"]
        if not self.plan:
            return
        if kind == "timing":
            self.say("  timing a mid-sized sample on this machine: a few training steps and a validation ...")
        elif kind == "estimate":
            stem_s, samples = details["stem_s"], details["samples"]
            stem = f"the stem {duration(stem_s)}, then " if stem_s else ""
            total = stem_s + samples * self.sample_s
            self.say(
                f"  estimated duration on this machine: about {duration(total)} ({stem}{plural(samples, 'sample')} "
                f"of about {duration(details['sample_s'])} over {plural(details['workers'], 'worker')}; "
                f"a sample met before costs nothing)"
            )

    def eta(self, done: int, total: int) -> float:
        if self.sample_s is None:
            return (self.clock() - self.began) / max(self.rows, 1) * (total - done)
        return self.pace.ratio * self.sample_s * (total - done)

    def sample(self, row: dict, total: int) -> None:
        """``on_sample``: after each recorded sample."""
        now, done = self.clock(), row["index"] + 1
        if self.rows and not row["cached"] and self.sample_s:  # the first follows the setup: not a sample's pace
            self.pace.update(now - self.then, self.sample_s)
        self.rows, self.then = self.rows + 1, now
        if not self.show:
            return
        cached = " (cached)" if row["cached"] else ""
        eta = duration(self.eta(done, total))
        if self.bars is not None:
            if self.task is None:  # shown from the first sample on, so bad input stays one line
                self.bars.start()
                self.task = self.bars.add_task("template search", total=total)
            description = f"template search, reward {row['reward']:.3f}{cached}, ETA {eta}"
            self.bars.update(self.task, completed=done, description=description)
            return
        if self.last_line is not None and now - self.last_line < self.every and done < total:
            return
        self.last_line = now
        self.say(
            f"template search: sample {done}/{total}, reward {row['reward']:.3f}{cached}, "
            f"elapsed {duration(now - self.began)}, ETA {eta}"
        )

    def stop(self) -> None:
        if self.task is not None:  # rich's stop() writes a newline even for bars never started
            self.bars.stop()


def interrupted_line(run_dir: Path, command: str) -> str:
    """What an interrupted search says: how to resume it, or that there is nothing to resume yet."""
    checkpoints = sorted(p.name for p in run_dir.glob("checkpoint-*.pt")) if run_dir.is_dir() else []
    if not checkpoints:
        return f"interrupted before the first checkpoint was saved; nothing to resume: `{command}` starts again"
    held = f"{', '.join(checkpoints)} in {run_dir} holds the last checkpoint"
    return f"interrupted; {held}: `{command} --resume` continues it"
