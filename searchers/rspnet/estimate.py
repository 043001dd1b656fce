"""How long a search will take on this machine: a few timed steps of each of its stages, before it starts.

Each stage's supernet is built as the search builds it and fed one real batch of each data half; one
untimed step warms it up (allocation, first-call costs), then weight steps alone (the warm-up epochs)
and architecture + weight steps (the rest) are timed apart. Stage 2 needs the decoded cell, which
stage 1 has not found yet: its stand-in has the configured number of steps, every edge a 3x3
separable conv (a mid-priced op of the DARTS space). The probe runs in a fork of torch's RNG, so the
search itself is the same with or without it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from rspnet_zoo.spec.models import Cell, CellStep, Edge
from searchers.rspnet.bilevel import Bilevel
from searchers.rspnet.budgets import SearchConfig
from searchers.rspnet.cell_search import CellSearch
from searchers.rspnet.path_search import PathSearch

STAND_IN_OP = "sep_conv_3x3"
REPEATS = 2  # timed steps of each kind per stage


@dataclass(frozen=True)
class StageEstimate:
    """Seconds per step of one stage, and what it has to do: ``epochs`` x ``steps_per_epoch`` steps,
    the first ``warmup_epochs`` of them weight steps alone."""

    stage: str
    epochs: int
    warmup_epochs: int
    steps_per_epoch: int
    weight_step_s: float
    bilevel_step_s: float  # an architecture step and a weight step
    repeats: int = REPEATS  # timed steps of each kind it rests on

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def seconds(self, first: int = 0, last: int | None = None) -> float:
        """Predicted seconds of steps ``first`` .. ``last`` - 1 (default: to the end of the stage)."""
        last = self.total_steps if last is None else last
        boundary = min(max(self.warmup_epochs * self.steps_per_epoch, first), last)
        return (boundary - first) * self.weight_step_s + (last - boundary) * self.bilevel_step_s


def stand_in_cell(steps: int, primitives: tuple[str, ...]) -> Cell:
    """A two-input cell of ``steps`` steps, each reading the two states before it."""
    op = STAND_IN_OP if STAND_IN_OP in primitives else primitives[-1]
    return Cell(
        num_inputs=2,
        steps=[CellStep(edges=[Edge(input=i, op=op), Edge(input=i + 1, op=op)]) for i in range(steps)],
        concat=list(range(2, 2 + steps)),
    )


def _timed(step, repeats: int) -> float:
    step()  # warm-up, not counted
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats


def time_stage(stage, batch: tuple[torch.Tensor, ...], steps_per_epoch: int, repeats: int = REPEATS) -> StageEstimate:
    """``stage``: a CellSearch or PathSearch; ``batch``: (x, y, x_arch, y_arch)."""
    x, y, x_arch, y_arch = batch
    bilevel = Bilevel(stage.model, stage.schedule)
    stage.model.train()
    weight_s = _timed(lambda: bilevel.weight_step(x, y), repeats)
    arch_s = _timed(lambda: bilevel.arch_step(x, y, x_arch, y_arch), repeats)
    schedule = stage.schedule
    return StageEstimate(
        stage.name, schedule.epochs, schedule.warmup_epochs, steps_per_epoch, weight_s, weight_s + arch_s
    )


def estimate_stage(
    name: str,
    config: SearchConfig,
    batch: tuple[torch.Tensor, ...],
    num_classes: int,
    steps_per_epoch: int,
    cell: Cell | None = None,
) -> StageEstimate:
    """The estimate of stage ``name`` ('cell' or 'path') on ``batch`` (x, y, x_arch, y_arch); the path stage
    on ``cell``, or without one on the stand-in cell (module docstring)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if name == "cell":
            return time_stage(CellSearch(config, num_classes, config.cell.primitives), batch, steps_per_epoch)
        cell = cell or stand_in_cell(config.cell.steps, tuple(config.cell.primitives))
        return time_stage(PathSearch(config, cell, num_classes), batch, steps_per_epoch)
