"""Search settings: one validated config per run, from a named budget plus explicit overrides.

``paper`` follows the published settings the two stages come from: PC-DARTS for the cell search (C=16, 8
cells, 4 steps, K=4, batch 256, 50 epochs, architecture updates from epoch 15, weights by SGD lr 0.1
cosine to 0.001, alphas by Adam lr 6e-4) and Auto-DeepLab for the path search (12 layers, F=8, 321x321
crops, 40 epochs, architecture updates from epoch 20, arch lr 3e-3). ``smoke`` runs both stages on 8
images, one step an epoch; ``small`` is sized for minutes on one CPU core (it emitted the shipped
rspnet_searched; docs/benchmarks.md has the measured times), with the architecture learning rate raised to
3e-3 (Auto-DeepLab's) and 40 cell epochs (architecture from epoch 12, PC-DARTS' 30%): with fewer, the alphas
stay within a few percent of uniform and the decoded cell is decided by the initialisation. ``mobile`` is
``small``'s schedule on a space that can be fast (issue 10): a strided stem straight to 1/8, cells at 1/8 only
in the first two of 3 layers, widths down to 0.42 of F=24 for ``--latency-target`` to choose from; the shipped
rspnet_small and rspnet_c come from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from rspnet_zoo.errors import ZooError
from rspnet_zoo.spec.models import Channels, Identifier, Reduction, Strict
from rspnet_zoo.spec.ops import DARTS_PRIMITIVES, OP_TRAITS

NUM_LEVELS = 4  # the network levels 1/4 .. 1/32


class Schedule(Strict):
    """Bilevel optimisation: weights by SGD on one half of the data, architecture by Adam on the other."""

    epochs: Annotated[int, Field(ge=1, le=1000)]
    warmup_epochs: Annotated[
        int, Field(ge=0, le=1000, description="epochs of weight training before the architecture moves")
    ] = 0
    lr: Annotated[float, Field(gt=0)] = 0.025
    lr_min: Annotated[float, Field(ge=0)] = 0.001
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 3e-4
    grad_clip: Annotated[float, Field(gt=0)] = 5.0
    arch_lr: Annotated[float, Field(gt=0)] = 6e-4
    arch_weight_decay: Annotated[float, Field(ge=0)] = 1e-3
    order: Literal[1, 2] = Field(1, description="1: first-order DARTS; 2: finite-difference Hessian-vector product")
    head_channels: Annotated[int, Field(ge=1, le=1024)] = 32
    latency_weight: Annotated[float, Field(ge=0)] = Field(
        2.0,
        description="with --latency-target: weight of the penalty w * max(0, E[latency] / target - 1) in the "
        "architecture loss",
    )
    latency_price: Annotated[float, Field(ge=0)] = Field(
        0.5,
        description="with --latency-target: weight of p * log(E[latency] / target) in the architecture loss, "
        "a price on latency below the target too (MnasNet's soft constraint)",
    )

    @model_validator(mode="after")
    def _warmup_leaves_epochs(self):
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs}), "
                f"or the architecture never moves"
            )
        return self


class CellStage(Schedule):
    """Stage 1: mixed-op cells on a proxy chain over the resolution levels."""

    layers: Annotated[int, Field(ge=1, le=64, description="cells in the proxy network")] = 8
    levels: Annotated[int, Field(ge=1, le=NUM_LEVELS, description="resolution levels the proxy chain walks down")] = (
        NUM_LEVELS
    )
    channels: Annotated[int, Field(ge=1, le=512, description="cell C at the first level, doubled per level")] = 16
    steps: Annotated[int, Field(ge=1, le=8, description="intermediate nodes of the searched cell")] = 4
    partial: Annotated[
        int, Field(ge=1, le=16, description="PC-DARTS K: 1/K of the channels go through each mixed op (1 = all)")
    ] = 4
    stem_reduction: Literal[1, 2, 4] = Field(
        4, description="resolution of the first cells (4: 1/4, as in the emitted networks)"
    )
    skip_cap: Annotated[
        int, Field(ge=0, le=16, description="most skip-connects the decoded cell may keep (P-DARTS)")
    ] = 2
    primitives: Annotated[tuple[str, ...], Field(min_length=1)] = Field(
        DARTS_PRIMITIVES, description="the ops each mixed edge chooses between (names of the ops table)"
    )

    @model_validator(mode="after")
    def _consistent(self):
        unknown = [p for p in self.primitives if p not in OP_TRAITS]
        if unknown:
            raise ValueError(f"unknown op '{unknown[0]}' (known: {', '.join(sorted(OP_TRAITS))})")
        if len(set(self.primitives)) != len(self.primitives):
            raise ValueError("lists an op twice")
        if self.primitives == ("none",):
            raise ValueError("'none' alone leaves nothing to choose")
        if self.channels % self.partial:
            raise ValueError(f"partial K={self.partial} must divide channels={self.channels}")
        if self.levels > self.layers:
            raise ValueError(f"{self.layers} cells cannot walk down {self.levels} levels")
        return self


class PathStage(Schedule):
    """Stage 2: the fixed cell on an L x 4 grid of levels, every candidate path weighted by attention."""

    layers: Annotated[int, Field(ge=1, le=32, description="grid layers L")] = 12
    channels: Annotated[
        int, Field(ge=1, le=256, description="F: cell C at 1/4 during the search, doubled per level")
    ] = 8
    two_back: bool = Field(False, description="also offer paths from two layers back")
    topk: Annotated[int, Field(ge=1, le=6)] | None = Field(2, description="paths kept per node (the strongest)")
    threshold: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="keep the paths whose attention reaches this (with topk: at most topk of them)"
    )
    spec_channels: Annotated[int, Field(ge=1, le=256, description="F of the emitted network")] = 16
    rsp_ratio: Annotated[float, Field(gt=0, lt=1, description="RSP: fraction of channels through the cell")] = 0.5
    rsp_depths: tuple[int, int, int, int] = Field(
        (0, 0, 1, 2), description="RSP recursion depth per level (0: no split)"
    )
    stem_reduction: Literal[4, 8] = Field(
        4, description="resolution of the stem and the first level (8: a cheap strided stem straight to 1/8)"
    )
    finest_layers: Annotated[int, Field(ge=1, le=32)] | None = Field(
        None, description="layers with a cell at the first level (None: every layer); the head reads the last"
    )
    latency_widths: Annotated[tuple[Annotated[float, Field(gt=0, le=1)], ...], Field(min_length=1)] = Field(
        (1.0, 0.75, 0.5),
        description="with --latency-target: multipliers of spec_channels the emitted network may narrow to "
        "(the widest one predicted to meet the target)",
    )

    @model_validator(mode="after")
    def _keeps_something(self):
        if self.topk is None and self.threshold is None:
            raise ValueError("set topk, threshold or both: the decoder needs a rule for which paths to keep")
        if any(not 0 <= d <= 4 for d in self.rsp_depths):
            raise ValueError("rsp_depths are between 0 and 4")
        return self


class EncoderLevel(Strict):
    """One feature level of a timm encoder, as timm's ``feature_info`` gives it."""

    level: Annotated[int, Field(ge=0)]  # the index into feature_info (an out_indices value)
    reduction: Reduction
    channels: Channels


class SearchEncoder(Strict):
    """A timm encoder under the searched cells (``--encoder``): in place of the stems, its feature levels at
    1/4 .. 1/32 are the first layer of the lattice (and the first level of the proxy chain). Set by the runner
    from timm, never by ``--set``: the request carries the name and ``freeze`` only."""

    model: Identifier
    levels: Annotated[tuple[EncoderLevel, ...], Field(min_length=1, max_length=NUM_LEVELS)]  # finest first
    freeze: bool = Field(False, description="the encoder's weights stay as they are (and its BatchNorms in eval)")


class SearchConfig(Strict):
    image_size: Annotated[int, Field(ge=8, le=2048, description="square training crops")] = 64
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 8
    samples: Annotated[int, Field(ge=2)] | None = Field(
        None, description="images taken from the train split (None: all); half train the weights, half the architecture"
    )
    cell: CellStage
    path: PathStage
    encoder: SearchEncoder | None = None


@dataclass(frozen=True)
class Budget:
    """A named preset: what it is for and how much work it is (the CLI help and docs/search.md say both),
    and its settings. Before a search starts, the CLI prints an estimate measured on the machine at hand;
    measured times are in docs/benchmarks.md, never here."""

    purpose: str
    duration: str  # the work in units that hold on any machine: images, steps, epochs
    config: SearchConfig


_SMALL = SearchConfig(
    image_size=64,
    batch_size=8,
    samples=400,
    cell=CellStage(epochs=40, warmup_epochs=12, layers=8, channels=8, steps=3, partial=2, lr=0.05, arch_lr=3e-3),
    path=PathStage(epochs=20, warmup_epochs=6, layers=6, channels=12, arch_lr=3e-3, lr=0.05),
)
# small's schedule on a space that can be fast (stem to 1/8, two finest cells, 3 layers, widths for a target)
_MOBILE = _SMALL.model_copy(
    update=dict(
        path=PathStage.model_validate(
            _SMALL.path.model_dump()
            | dict(
                layers=3,
                stem_reduction=8,
                finest_layers=2,
                spec_channels=24,
                latency_widths=(1.0, 0.83, 0.67, 0.5, 0.42),
            )
        )
    )
)

BUDGETS: dict[str, Budget] = {
    "smoke": Budget(
        "both stages, for tests and a first look",
        "8 images, 1 step an epoch, 4 steps in all: seconds",
        SearchConfig(
            image_size=32,
            batch_size=4,
            samples=8,
            cell=CellStage(
                epochs=2, warmup_epochs=1, layers=2, levels=2, channels=4, steps=2, partial=2, head_channels=8
            ),
            path=PathStage(
                epochs=2, warmup_epochs=1, layers=2, channels=4, spec_channels=8, head_channels=8, arch_lr=3e-3
            ),
        ),
    ),
    "small": Budget(
        "emitted the shipped rspnet_searched",
        "400 images, 25 steps an epoch, 1,500 steps in all: minutes on a CPU (docs/benchmarks.md)",
        _SMALL,
    ),
    "mobile": Budget(
        "the small schedule on a space that can be fast: the shipped rspnet_small and rspnet_c, with --latency-target",
        "as small, after the space's latency profile on a device that has none cached (docs/benchmarks.md)",
        _MOBILE,
    ),
    "paper": Budget(
        "the published settings: PC-DARTS for the cell, Auto-DeepLab for the paths",
        "the whole train split in batches of 256 crops of 321x321: sized for GPUs",
        SearchConfig(
            image_size=321,
            batch_size=256,
            samples=None,
            cell=CellStage(epochs=50, warmup_epochs=15, layers=8, channels=16, steps=4, partial=4, lr=0.1),
            path=PathStage(epochs=40, warmup_epochs=20, layers=12, channels=8, arch_lr=3e-3, head_channels=256),
        ),
    ),
}


NOT_SETTINGS = ("cell", "path", "encoder")  # SearchConfig fields that --set does not reach


def resolve_config(budget: str, overrides: dict[str, Any] | None = None) -> SearchConfig:
    """The named budget with ``overrides`` applied; keys are field names, dotted for one stage
    ('epochs' alone sets it in every stage that has it). Every error is one ZooError line."""
    if budget not in BUDGETS:
        raise ZooError(f"unknown budget '{budget}' (known: {', '.join(BUDGETS)})")
    doc = BUDGETS[budget].config.model_dump()
    for key, value in (overrides or {}).items():
        stage, _, field = key.rpartition(".")
        if stage:
            targets = [doc[stage]] if stage in ("cell", "path") else []
        elif key in doc and key not in NOT_SETTINGS:
            targets = [doc]
        else:
            targets = [t for t in (doc["cell"], doc["path"]) if field in t]
        if not targets or not all(field in t for t in targets):
            raise ZooError(f"unknown search setting '{key}' (known: {', '.join(known_settings())})")
        for t in targets:
            t[field] = value
    try:
        return SearchConfig.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ZooError(f"search setting {where}: {err['msg']}") from None


def budgets_help() -> str:
    """The --budget help, from the table."""
    return "Preset: " + "; ".join(f"{name} ({b.purpose}; {b.duration})" for name, b in BUDGETS.items()) + "."


def budgets_markdown() -> str:
    """The table of budgets in docs/search.md, from the table (a test holds the page to it)."""
    rows = [
        f"| `{name}` | {b.purpose} | {b.duration} | {c.cell.epochs} + {c.path.epochs} | {c.image_size} "
        f"| {c.batch_size} |"
        for name, b in BUDGETS.items()
        for c in [b.config]
    ]
    head = "| budget | for | work | epochs (cell + path) | crop | batch |\n|---|---|---|---|---|---|\n"
    return head + "\n".join(rows) + "\n"


def known_settings() -> list[str]:
    shared = [f for f in SearchConfig.model_fields if f not in NOT_SETTINGS]
    both = sorted(set(CellStage.model_fields) & set(PathStage.model_fields))
    return shared + both + [f"cell.{f}" for f in CellStage.model_fields] + [f"path.{f}" for f in PathStage.model_fields]
