"""Running a search: the two data halves, the epoch loop, a checkpoint each epoch and resume, the JSONL
log of the architecture weights, the plots, and the emitted spec.

A run folder holds ``checkpoint-cell.pt`` / ``checkpoint-path.pt`` (model, optimisers, schedule,
history and torch's RNG state after each epoch), ``log.jsonl`` (one row per epoch), ``cell.json``
(the stage-1 result, the parent of a ``both`` spec), the emitted spec unless ``--out`` puts it elsewhere,
and the PNGs (``curves-<stage>.png``: loss and held-out mIoU per epoch; alphas, attention, cell, network).
The data order of every epoch is a function of (seed, stage, epoch) and each image's augmentation of
(seed, stage, epoch, image), so a resumed search replays exactly what the interrupted one would have done.

Under torchrun each rank trains on its share of every global batch (``rspnet_zoo.training.distributed``); the
architecture is decoded on rank 0 and broadcast, and only rank 0 writes. ``batch_size`` is per process:
a checkpoint records the global batch, so a resume may use another number of processes with the same
global batch (``--batch-size`` times processes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

import rspnet_zoo
from rspnet_zoo.data import build_dataset
from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import atomic_path, atomic_write_text
from rspnet_zoo.spec.io import load_spec, spec_sha256
from rspnet_zoo.spec.models import Cell, Genotype, Provenance
from rspnet_zoo.spec.render import render_graph, step_text
from rspnet_zoo.training import distributed
from rspnet_zoo.training.metrics import SegmentationMetrics
from searchers.rspnet.bilevel import Bilevel, check_search_amp
from searchers.rspnet.budgets import SearchConfig
from searchers.rspnet.cell_search import CellSearch
from searchers.rspnet.decode import CellDecision, PathDecision
from searchers.rspnet.latency_search import meet_target, open_goal
from searchers.rspnet.path_search import PathSearch
from searchers.rspnet.plots import plot_alphas, plot_attention, plot_cell, plot_stage_curves
from searchers.rspnet.structures import HEAD_CHANNELS, path_network, proxy_chain
from searchers.run_folders import check_run_folder, load_resumable, write_spec

STAGES = ("cell", "path", "both")
LOG_FILE = "log.jsonl"
CELL_SPEC_FILE = "cell.json"
SEARCHER = "rspnet-zoo searchers"


# what a stage's checkpoint holds beside its settings (checked before a resume uses any of it)
CHECKPOINT_FIELDS = dict(epoch=int, model=dict, bilevel=dict, rng=torch.Tensor, history=list, wall_s=float)


@dataclass(frozen=True)
class SearchRequest:
    stage: str
    budget: str
    config: SearchConfig
    name: str
    out: Path
    run_dir: Path
    dataset: str = "synthetic"
    data_root: Path | None = None
    seed: int = 0
    cell_spec: Path | None = None  # stage 'path': the spec whose cell is searched over
    cell_name: str | None = None
    resume: bool = False
    force: bool = False
    command: str = ""
    latency_target_ms: float | None = None  # see searchers.rspnet.latency_search
    latency_size: tuple[int, int] = (512, 1024)
    amp: str | None = None  # bf16: the supernet's forward passes in mixed precision (see searchers.rspnet.bilevel)

    def settings(self) -> dict:
        """What a checkpoint must agree with to be resumed."""
        latency = {} if self.latency_target_ms is None else dict(latency=[self.latency_target_ms, *self.latency_size])
        amp = {} if self.amp is None else dict(amp=self.amp)  # recorded when used: earlier checkpoints stay resumable
        return dict(
            **latency,
            **amp,
            stage=self.stage,
            config=self.config.model_dump(mode="json", exclude={"batch_size"}),
            global_batch=distributed.global_batch(self.config.batch_size),
            seed=self.seed,
            dataset=self.dataset,
            data_root=str(self.data_root) if self.data_root else None,
            cell_spec=str(self.cell_spec) if self.cell_spec else None,
            cell_name=self.cell_name,
        )


class SearchData:
    """The train split, cut into a half that trains the weights and a held-apart half for the architecture."""

    def __init__(self, dataset: str, root: Path | None, config: SearchConfig, seed: int):
        size = (config.image_size, config.image_size)
        data = build_dataset(dataset, "train", root=root, crop=size, train=True)
        count = len(data) if config.samples is None else min(config.samples, len(data))
        half = count // 2
        batch = distributed.global_batch(config.batch_size)
        if half < batch:
            raise ZooError(f"{count} training images give {half} per half, fewer than the global batch {batch}")
        self.parts = {"weights": Subset(data, range(half)), "arch": Subset(data, range(half, 2 * half))}
        self.num_classes = data.num_classes
        self.class_names = list(getattr(data, "class_names", None) or [])
        self.batch_size = config.batch_size
        self.seed = seed
        self.steps_per_epoch = half // batch

    def loader(self, part: str, stage: str, epoch: int) -> DataLoader:
        """This rank's share of the epoch's global batches of ``part``."""
        key = (self.seed * 7919 + STAGES.index(stage)) * 2 + (part == "arch")
        return distributed.shard_loader(self.parts[part], self.batch_size, seed=key, epoch=epoch, drop_last=True)


@dataclass
class StageRun:
    history: list[dict] = field(default_factory=list)
    wall_s: float = 0.0


EpochHook = Callable[[str, int], None]  # (stage, epoch) after each saved epoch
StepHook = Callable[[dict], None]  # dict(stage, epoch, epochs, step, total, loss) after each step; step 0 at a start


class Runner:
    def __init__(
        self, request: SearchRequest, data: SearchData, on_step: StepHook | None, on_epoch_end: EpochHook | None
    ):
        self.request = request
        self.data = data
        self.on_step = on_step
        self.on_epoch_end = on_epoch_end
        self.runs: dict[str, StageRun] = {}

    def checkpoint(self, stage: str) -> Path:
        return self.request.run_dir / f"checkpoint-{stage}.pt"

    def run(self, stage) -> StageRun:
        """Train ``stage`` (a CellSearch or PathSearch) to its last epoch, from its checkpoint if one exists."""
        schedule, model = stage.schedule, stage.model
        bilevel = Bilevel(model, schedule, stage.penalty, self.request.amp)
        run = self.runs[stage.name] = StageRun()
        start = 0
        file = self.checkpoint(stage.name)
        state = distributed.on_main(
            lambda: load_resumable(file, self.request.settings(), CHECKPOINT_FIELDS) if file.exists() else None
        )
        if state is not None:
            model.load_state_dict(state["model"])
            bilevel.load_state_dict(state["bilevel"])
            torch.set_rng_state(state["rng"])
            start, run.history, run.wall_s = state["epoch"], list(state["history"]), state["wall_s"]
        self._report(stage, start, start * self.data.steps_per_epoch, None)
        for epoch in range(start, schedule.epochs):
            started = time.perf_counter()
            row = self._epoch(stage, bilevel, epoch)
            row["seconds"] = round(time.perf_counter() - started, 3)
            run.wall_s += row["seconds"]
            run.history.append(row)
            state = dict(
                settings=self.request.settings(),
                epoch=epoch + 1,
                model=model.state_dict(),
                bilevel=bilevel.state_dict(),
                rng=torch.get_rng_state(),
                history=run.history,
                wall_s=run.wall_s,
            )
            if distributed.is_main():
                with atomic_path(file) as tmp:
                    torch.save(state, tmp)
                self.write_log()
            if self.on_epoch_end is not None:
                self.on_epoch_end(stage.name, epoch + 1)
        model.eval()
        return run

    def _report(self, stage, epoch: int, step: int, loss: float | None) -> None:
        if self.on_step is not None:
            total = stage.schedule.epochs * self.data.steps_per_epoch
            self.on_step(
                dict(stage=stage.name, epoch=epoch, epochs=stage.schedule.epochs, step=step, total=total, loss=loss)
            )

    def _epoch(self, stage, bilevel: Bilevel, epoch: int) -> dict:
        model, schedule = stage.model, stage.schedule
        model.train()
        moves = epoch >= schedule.warmup_epochs
        metrics = SegmentationMetrics(self.data.num_classes)
        lr = bilevel.w_opt.param_groups[0]["lr"]
        losses, arch_losses = [], []
        batches = zip(self.data.loader("weights", stage.name, epoch), self.data.loader("arch", stage.name, epoch))
        for (x, y), (x_arch, y_arch) in batches:
            if moves:
                loss, logits = bilevel.arch_step(x, y, x_arch, y_arch)
                arch_losses.append(loss)
                metrics.update(logits, y_arch)
            losses.append(bilevel.weight_step(x, y))
            self._report(stage, epoch + 1, epoch * self.data.steps_per_epoch + len(losses), losses[-1])
        bilevel.end_epoch()
        return dict(
            stage=stage.name,
            epoch=epoch + 1,
            lr=lr,
            train_loss=distributed.mean(sum(losses) / len(losses)),
            arch_loss=distributed.mean(sum(arch_losses) / len(arch_losses)) if arch_losses else None,
            arch_miou=metrics.compute()["miou"] if arch_losses else None,
            **stage.snapshot(),
        )

    def write_log(self) -> None:
        rows = [row for run in self.runs.values() for row in run.history]
        atomic_write_text(self.request.run_dir / LOG_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def cell_of(spec: Path, cell_name: str | None) -> tuple[Cell, str]:
    genotype = load_spec(spec)
    if cell_name is None:
        if len(genotype.cells) != 1:
            raise ZooError(f"{spec}: has cells {', '.join(genotype.cells) or '(none)'}; name one with --cell-name")
        cell_name = next(iter(genotype.cells))
    if cell_name not in genotype.cells:
        raise ZooError(f"{spec}: has no cell '{cell_name}' (it has {', '.join(genotype.cells) or 'none'})")
    cell = genotype.cells[cell_name]
    if cell.reduction or cell.num_inputs != 2:
        raise ZooError(f"{spec}: cell '{cell_name}' must be a two-input normal cell for the path search")
    return cell, spec_sha256(genotype)


def _check_request(r: SearchRequest) -> None:
    check_search_amp(r.amp)
    if r.stage not in STAGES:
        raise ZooError(f"unknown stage '{r.stage}' (choose {', '.join(STAGES)})")
    if (r.stage == "path") != (r.cell_spec is not None):
        raise ZooError(
            "--cell SPEC goes with --stage path, and --stage path needs it"
            if r.stage == "path"
            else f"--cell is for --stage path; --stage {r.stage} searches its own cell"
        )
    inputs = [r.cell_spec] if r.cell_spec is not None else []
    resumed = check_run_folder(r.name, r.out, r.run_dir, "checkpoint-*.pt", r.resume, r.force, inputs=inputs)
    for file in resumed:  # refused before the plan is printed, not after
        load_resumable(file, r.settings(), CHECKPOINT_FIELDS)


def search(
    request: SearchRequest,
    on_step: StepHook | None = None,
    on_epoch_end: EpochHook | None = None,
    on_start: Callable[[SearchData], None] | None = None,
) -> dict:
    """Run the requested stage(s) and write the emitted spec to ``request.out``; returns a summary.

    ``on_step`` reports progress (see ``StepHook``); ``on_epoch_end(stage, epoch)`` runs after each saved epoch;
    ``on_start(data)`` once the request is checked and the data loaded, before any training (the CLI
    prints its plan and estimate there).
    The seeds and a resumed checkpoint's RNG state apply to a fork of torch's RNG: the caller's is left as it was.
    """
    distributed.on_main(_check_request, request)
    cfg = request.config
    data = SearchData(request.dataset, request.data_root, cfg, request.seed)
    if on_start is not None and distributed.is_main():
        with distributed.alone():  # the plan's timed probe steps: on rank 0, without collectives
            on_start(data)
    if distributed.is_main():
        request.run_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner(request, data, on_step, on_epoch_end)
    goal = None
    if request.latency_target_ms is not None:
        # rank 0 measures (or reloads) the latency table, every rank prices with the same one
        goal = distributed.on_main(
            open_goal, request.latency_target_ms, request.latency_size, cfg, data.num_classes, request.command
        )
    plots: list[str] = []
    summary: dict = dict(stage=request.stage, name=request.name, run_dir=str(request.run_dir))
    with torch.random.fork_rng(devices=[]):
        if request.stage == "path":
            cell, parent = cell_of(request.cell_spec, request.cell_name)
            cell_decision = None
        else:
            torch.manual_seed(request.seed)
            cell_stage = CellSearch(cfg, data.num_classes, cfg.cell.primitives, goal)
            runner.run(cell_stage)
            if distributed.is_main():
                plots.append(str(plot_stage_curves(runner.runs["cell"].history, "cell", request.run_dir)))
            cell_decision = _decode(cell_stage)
            cell = cell_decision.cell
            cell_spec = _cell_genotype(request, data, cell, runner, cell_decision)
            parent = write_spec(cell_spec, request.run_dir / CELL_SPEC_FILE)
            if distributed.is_main():
                plots.append(
                    str(plot_alphas(runner.runs["cell"].history, cell_stage.primitives, request.run_dir / "alphas.png"))
                )
                plots.append(str(plot_cell(cell, request.run_dir / "cell.png")))
            summary["cell"] = _describe_cell(cell_decision)
        if request.stage == "cell":
            result = cell_spec.model_copy(update=dict(name=request.name))
            if goal is not None:
                result, summary["latency"] = distributed.on_main(meet_target, goal, lambda _: result, None)
        else:
            torch.manual_seed(request.seed + 1)
            path_stage = PathSearch(cfg, cell, data.num_classes, goal)
            runner.run(path_stage)
            decision = _decode(path_stage)
            if distributed.is_main():
                plots.append(str(plot_stage_curves(runner.runs["path"].history, "path", request.run_dir)))
                plots.append(str(plot_attention(runner.runs["path"].history, request.run_dir / "attention.png")))
            provenance = _provenance(request, runner, parent, cell_decision, decision)

            def emit(channels: int) -> Genotype:
                return path_network(
                    cell,
                    path_stage.model.lattice,
                    channels,
                    cfg.path.rsp_ratio,
                    cfg.path.rsp_depths,
                    data.num_classes,
                    kept=decision.kept,
                    name=request.name,
                    provenance=provenance,
                    class_names=data.class_names,
                )

            if goal is None:
                result = emit(cfg.path.spec_channels)
            else:  # measured on rank 0, the spec it picks broadcast
                result, summary["latency"] = distributed.on_main(meet_target, goal, emit, cfg.path)
            summary["paths"] = _describe_paths(decision)
    result = result.model_copy(
        update=dict(
            description=(
                f"Found by `rspnet-zoo search --stage {request.stage}` (budget {request.budget}, seed {request.seed}) "
                f"on the {request.dataset} data set; see provenance for the command and the run."
            )
        )
    )
    sha = write_spec(result, request.out)
    distributed.check_same(spec_sha256(result.model_copy(update=dict(provenance=Provenance()))), "decoded networks")
    if distributed.is_main():
        plots.append(str(render_graph(result, request.run_dir / "network.png")))
    summary.update(
        out=str(request.out),
        sha256=sha,
        parent_sha256=result.provenance.parent_sha256,
        wall_time_s=result.provenance.wall_time_s,
        log=str(request.run_dir / LOG_FILE),
        plots=plots,
        epochs=result.provenance.epochs,
        parallel=distributed.describe(cfg.batch_size),
    )
    return summary


def _decode(stage) -> CellDecision | PathDecision:
    """Decode on rank 0, once every rank is seen to hold the same architecture; every rank gets the result."""
    distributed.check_same(distributed.digest(stage.model.arch_parameters()), f"{stage.name} architecture parameters")
    return distributed.broadcast_object(stage.decode() if distributed.is_main() else None)


def _cell_genotype(
    request: SearchRequest, data: SearchData, cell: Cell, runner: Runner, decision: CellDecision
) -> Genotype:
    """The stage-1 result as a whole network: the searched cell on the proxy chain at the emitted width."""
    cfg = request.config
    return proxy_chain(
        cell,
        cfg.cell.layers,
        cfg.cell.levels,
        cfg.path.spec_channels,
        stem_reduction=cfg.cell.stem_reduction,
        head_channels=HEAD_CHANNELS,
        num_classes=data.num_classes,
        name=f"{request.name}_cell" if request.stage != "cell" else request.name,
        provenance=_provenance(request, runner, None, decision, None, stage="cell"),
        class_names=data.class_names,
    )


def _provenance(
    request: SearchRequest,
    runner: Runner,
    parent: str | None,
    cell: CellDecision | None,
    paths: PathDecision | None,
    stage: str | None = None,
) -> Provenance:
    cfg = request.config
    runs = {k: v for k, v in runner.runs.items() if stage is None or k == stage}
    notes = [distributed.describe(cfg.batch_size)]
    if request.amp is not None:
        notes.append(f"mixed precision {request.amp}")
    if cell is not None:
        notes.append(
            f"cell search: {cfg.cell.epochs} epochs, order {cfg.cell.order}, partial channels K={cfg.cell.partial}, "
            f"{cfg.cell.layers} cells x C={cfg.cell.channels}; skip-connects {cell.skips_before_cap} -> {cell.skips} "
            f"(cap {cfg.cell.skip_cap})"
        )
    if paths is not None:
        rule = " and ".join(
            filter(
                None,
                [
                    f"top-{cfg.path.topk}" if cfg.path.topk else "",
                    f"attention >= {cfg.path.threshold}" if cfg.path.threshold else "",
                ],
            )
        )
        notes.append(
            f"path search: {cfg.path.epochs} epochs, {cfg.path.layers} layers x F={cfg.path.channels}, "
            f"two-back {'on' if cfg.path.two_back else 'off'}, kept {rule}; "
            f"{len(paths.dropped)} nodes dropped, {len(paths.pruned)} pruned"
        )
    return Provenance(
        searcher=SEARCHER,
        stage=stage or request.stage,
        seed=request.seed,
        dataset=request.dataset,
        budget=request.budget,
        epochs=sum(cfg.cell.epochs if k == "cell" else cfg.path.epochs for k in runs),
        wall_time_s=round(sum(r.wall_s for r in runs.values()), 1),
        tool_version=rspnet_zoo.__version__,
        parent_sha256=parent,
        command=request.command or None,
        notes="; ".join(notes) or None,
    )


def _describe_cell(d: CellDecision) -> dict:
    return dict(
        steps=[step_text(step) for step in d.cell.steps],
        skips_before_cap=d.skips_before_cap,
        skips=d.skips,
        struck=[list(e) for e in d.struck],
    )


def _describe_paths(d: PathDecision) -> dict:
    return dict(
        kept={n: [[src, round(w, 4)] for src, w in p] for n, p in d.kept.items()},
        dropped=list(d.dropped),
        pruned=list(d.pruned),
    )
