"""Running a search: the two data halves, the epoch loop, checkpoints and resume, the JSONL log of the
architecture weights, the plots, and the emitted spec.

A run folder holds ``checkpoint-cell.pt`` / ``checkpoint-path.pt`` (model, optimisers, schedule, history
and torch's RNG state after each epoch, and within an epoch every ``checkpoint_every_s`` of training with
the epoch's step and running sums, so an interrupt loses at most that), ``log.jsonl`` (one row per epoch), ``cell.json``
(the stage-1 result, the parent of a ``both`` spec), the emitted spec unless ``--out`` puts it elsewhere,
and the PNGs (``curves-<stage>.png``: loss and held-out mIoU per epoch; alphas, attention, cell, network).
The data order of every epoch is a function of (seed, stage, epoch) and each image's augmentation of
(seed, stage, epoch, image), so a resumed search replays exactly what the interrupted one would have done
(within an epoch it reloads the batches already done, at most an epoch of data loading, and goes on).

Under torchrun each rank trains on its share of every global batch (``rspnet_zoo.training.distributed``); the
architecture is decoded on rank 0 and broadcast, and only rank 0 writes. ``batch_size`` is per process:
a checkpoint records the global batch, so a resume may use another number of processes with the same
global batch (``searchers.rspnet.request``). A checkpoint within an epoch holds the running sums of all
ranks (the loss sums' mean, the confusion matrices' sum), decided on rank 0's clock and broadcast.

The emitted spec records no wall time and no folder (``searchers.requests``): two runs of one deterministic
search write the same file. The summary says how long it took and gives both hashes: ``sha256`` of the
file, ``architecture_sha256`` of the network alone (``rspnet_zoo.spec.io.architecture_sha256``), which
runs that found the same network share whatever their names and notes.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

import rspnet_zoo
from rspnet_zoo.data import build_dataset
from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import atomic_path, atomic_write_text
from rspnet_zoo.spec.io import architecture_sha256
from rspnet_zoo.spec.models import Cell, Genotype, Provenance
from rspnet_zoo.spec.render import render_graph, step_text
from rspnet_zoo.training import distributed
from rspnet_zoo.training.metrics import SegmentationMetrics
from searchers.requests import RunFiles
from searchers.rspnet.bilevel import Bilevel
from searchers.rspnet.budgets import SearchConfig
from searchers.rspnet.cell_search import CellSearch
from searchers.rspnet.decode import CellDecision, PathDecision
from searchers.rspnet.encoder import search_encoder
from searchers.rspnet.estimate import StageEstimate, estimate_stage
from searchers.rspnet.latency_search import LatencyGoal, fastest_ms, meet_target, plan_space_profile
from searchers.rspnet.path_search import PathSearch
from searchers.rspnet.plots import plot_alphas, plot_attention, plot_cell, plot_stage_curves
from searchers.rspnet.request import STAGES, SearchRequest, cell_of, check_search_amp, check_stage
from searchers.rspnet.structures import HEAD_CHANNELS, path_network, proxy_chain
from searchers.run_folders import check_run_folder, load_resumable, write_spec

LOG_FILE = "log.jsonl"
CELL_SPEC_FILE = "cell.json"
SEARCHER = "rspnet-zoo searchers"


# what a stage's checkpoint holds beside its settings (checked before a resume uses any of it)
CHECKPOINT_FIELDS = dict(epoch=int, model=dict, bilevel=dict, rng=torch.Tensor, history=list, wall_s=float)


class SearchData:
    """The train split, cut into a half that trains the weights and a held-apart half for the architecture."""

    def __init__(self, dataset: str, root: Path | None, config: SearchConfig, seed: int):
        size = (config.image_size, config.image_size)
        data = build_dataset(dataset, "train", root=root, crop=size, train=True)
        count = len(data) if config.samples is None else min(config.samples, len(data))
        half = count // 2
        batch = distributed.global_batch(config.batch_size)
        if half < batch:
            raise ZooError(
                f"{count} training images give {half} per half, fewer than the "
                f"{distributed.describe(config.batch_size)}: pass --samples {2 * batch} or more, or a smaller "
                f"--batch-size (per process)"
            )
        self.parts = {"weights": Subset(data, range(half)), "arch": Subset(data, range(half, 2 * half))}
        self.num_classes = data.num_classes
        self.class_names = list(getattr(data, "class_names", None) or [])
        self.batch_size = config.batch_size
        self.seed = seed
        self.steps_per_epoch = half // batch

    @property
    def images_per_half(self) -> int:
        return len(self.parts["weights"])

    def loader(self, part: str, stage: str, epoch: int) -> DataLoader:
        """This rank's share of the epoch's global batches of ``part``."""
        key = (self.seed * 7919 + STAGES.index(stage)) * 2 + (part == "arch")
        return distributed.shard_loader(self.parts[part], self.batch_size, seed=key, epoch=epoch, drop_last=True)

    def probe_batch(self) -> tuple[torch.Tensor, ...]:
        """One batch of each half, (x, y, x_arch, y_arch), for the timed steps of the estimate."""
        with torch.random.fork_rng(devices=[]):
            (x, y), (x_arch, y_arch) = (next(iter(self.loader(part, "both", 0))) for part in ("weights", "arch"))
        return x, y, x_arch, y_arch


@dataclass
class StageRun:
    history: list[dict] = field(default_factory=list)
    wall_s: float = 0.0


EpochHook = Callable[[str, int], None]  # (stage, epoch) after each saved epoch
StepHook = Callable[[dict], None]  # dict(stage, epoch, epochs, step, total, loss) after each step; step 0 at a start
# (kind, details) on rank 0 before the training, for a plan: 'data' (images_per_half, steps_per_epoch,
# done: stage -> steps a resume skips), 'timing' (stage: its timed steps begin), 'estimate' (estimate: a
# StageEstimate), 'latency-profile' (profile: a rspnet_zoo.perf.latency.Profile, not yet run),
# 'latency-progress' (phase, done, total), 'latency-ready' (target_ms, fastest_ms: a lower bound of what
# the space can emit, None for the cell stage alone)
EventHook = Callable[[str, dict], None]


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
        start, within = 0, None
        file = self.checkpoint(stage.name)
        state = distributed.on_main(
            lambda: load_resumable(file, self.request.settings(), CHECKPOINT_FIELDS) if file.exists() else None
        )
        if state is not None:
            model.load_state_dict(state["model"])
            bilevel.load_state_dict(state["bilevel"])
            start, run.history, run.wall_s = state["epoch"], list(state["history"]), state["wall_s"]
            within = state.get("within")  # an epoch cut short: its RNG applies once its loaders exist
            if within is None:
                torch.set_rng_state(state["rng"])
        done = start * self.data.steps_per_epoch + (within["step"] if within else 0)
        self._report(stage, start + (within is not None), done, None)
        for epoch in range(start, schedule.epochs):
            row = self._epoch(stage, bilevel, run, epoch, within)
            within = None
            run.wall_s += row["seconds"]
            run.history.append(row)
            self._save(stage, bilevel, run, epoch + 1)
            if distributed.is_main():
                self.write_log()
            if self.on_epoch_end is not None:
                self.on_epoch_end(stage.name, epoch + 1)
        model.eval()
        return run

    def _save(self, stage, bilevel: Bilevel, run: StageRun, epoch: int, within: dict | None = None) -> None:
        """The stage's checkpoint: after ``epoch`` epochs, and ``within`` the next one (its step and sums)."""
        state = dict(
            settings=self.request.settings(),
            epoch=epoch,
            model=stage.model.state_dict(),
            bilevel=bilevel.state_dict(),
            rng=torch.get_rng_state(),
            history=run.history,
            wall_s=run.wall_s,
            within=within,
        )
        if distributed.is_main():
            with atomic_path(self.checkpoint(stage.name)) as tmp:
                torch.save(state, tmp)

    def _report(self, stage, epoch: int, step: int, loss: float | None) -> None:
        if self.on_step is not None:
            total = stage.schedule.epochs * self.data.steps_per_epoch
            self.on_step(
                dict(stage=stage.name, epoch=epoch, epochs=stage.schedule.epochs, step=step, total=total, loss=loss)
            )

    def _epoch(self, stage, bilevel: Bilevel, run: StageRun, epoch: int, within: dict | None) -> dict:
        """One epoch, or the rest of one from ``within`` (a checkpoint cut it short there)."""
        model, schedule = stage.model, stage.schedule
        model.train()
        moves = epoch >= schedule.warmup_epochs
        metrics = SegmentationMetrics(self.data.num_classes)
        lr = bilevel.w_opt.param_groups[0]["lr"]
        step, loss_sum, arch_sum, arch_steps, before_s = 0, 0.0, 0.0, 0, 0.0
        batches = zip(self.data.loader("weights", stage.name, epoch), self.data.loader("arch", stage.name, epoch))
        if within is not None:  # the loaders drew their seeds above: the saved RNG state follows that
            torch.set_rng_state(within["rng"])
            step, loss_sum, arch_sum, arch_steps = (
                within["step"],
                within["loss_sum"],
                within["arch_sum"],
                within["arch_steps"],
            )
            before_s = within["seconds"]
            if distributed.is_main():  # the other ranks' counts are in it
                metrics.load_counts(within["confusion"])
            batches = itertools.islice(batches, step, None)
        started = saved = time.perf_counter()
        for (x, y), (x_arch, y_arch) in batches:
            if moves:
                loss, logits = bilevel.arch_step(x, y, x_arch, y_arch)
                arch_sum, arch_steps = arch_sum + loss, arch_steps + 1
                metrics.update(logits, y_arch)
            loss = bilevel.weight_step(x, y)
            step, loss_sum = step + 1, loss_sum + loss
            now = time.perf_counter()
            if step < self.data.steps_per_epoch and distributed.broadcast_object(
                now - saved >= self.request.checkpoint_every_s
            ):
                within_now = dict(
                    step=step,
                    loss_sum=distributed.mean(loss_sum),
                    arch_sum=distributed.mean(arch_sum),
                    arch_steps=arch_steps,
                    confusion=distributed.sum_(metrics.counts()),
                    seconds=before_s + now - started,
                    rng=torch.get_rng_state(),
                )
                self._save(stage, bilevel, run, epoch, within_now)
                saved = time.perf_counter()
            self._report(stage, epoch + 1, epoch * self.data.steps_per_epoch + step, loss)
        bilevel.end_epoch()
        return dict(
            stage=stage.name,
            epoch=epoch + 1,
            lr=lr,
            train_loss=distributed.mean(loss_sum / step),
            arch_loss=distributed.mean(arch_sum / arch_steps) if arch_steps else None,
            arch_miou=metrics.compute()["miou"] if arch_steps else None,
            seconds=round(before_s + time.perf_counter() - started, 3),
            **stage.snapshot(),
        )

    def write_log(self) -> None:
        rows = [row for run in self.runs.values() for row in run.history]
        atomic_write_text(self.request.run_dir / LOG_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _check_request(r: SearchRequest) -> dict[str, tuple[int, int]]:
    """Refuse a bad request before anything is loaded; returns what a resume continues: stage -> (epochs
    done, steps done within the next)."""
    check_stage(r.stage, r.cell_spec)
    check_search_amp(r.amp)
    files = RunFiles(r.name, r.out, r.run_dir)
    inputs = [r.cell_spec] if r.cell_spec is not None else []
    checkpoints = check_run_folder(files, r.resume, r.force, r.settings(), r.shell_command or r.command, inputs=inputs)
    done = {}
    for file in checkpoints:  # refused before the plan is printed, not after
        state = load_resumable(file, r.settings(), CHECKPOINT_FIELDS)
        within = state.get("within")
        done[file.stem.removeprefix("checkpoint-")] = (state["epoch"], within["step"] if within else 0)
    return done


def search(
    request: SearchRequest,
    on_step: StepHook | None = None,
    on_epoch_end: EpochHook | None = None,
    on_event: EventHook | None = None,
    estimate: bool = False,
) -> dict:
    """Run the requested stage(s) and write the emitted spec to ``request.out``; returns a summary.

    ``on_step`` reports progress (see ``StepHook``); ``on_epoch_end(stage, epoch)`` runs after each saved epoch;
    ``on_event`` hears, on rank 0, what a plan says before the training (see ``EventHook``): the data, with
    ``estimate`` the timed steps of each stage, with a latency target the profile of the space and its
    progress. The seeds and a resumed checkpoint's RNG state apply to a fork of torch's RNG: the caller's is
    left as it was.
    """
    resumed = distributed.on_main(_check_request, request)
    if request.encoder is not None:  # timm's name and levels, before any data or supernet
        encoder = search_encoder(request.encoder, request.freeze_encoder)
        request = replace(request, config=request.config.model_copy(update=dict(encoder=encoder)))
    cfg = request.config
    data = SearchData(request.dataset, request.data_root, cfg, request.seed)
    cell, parent = cell_of(request.cell_spec, request.cell_name) if request.stage == "path" else (None, None)

    def tell(kind: str, **details) -> None:
        if on_event is not None and distributed.is_main():
            on_event(kind, details)

    spe = data.steps_per_epoch
    done = {stage: epochs * spe + steps for stage, (epochs, steps) in resumed.items()}
    tell("data", images_per_half=data.images_per_half, steps_per_epoch=spe, done=done)
    if estimate and on_event is not None and distributed.is_main():
        with distributed.alone():  # the timed probe steps: on rank 0, without collectives
            batch = data.probe_batch()
            for stage in request.stages:
                schedule = cfg.cell if stage == "cell" else cfg.path
                if done.get(stage, 0) >= schedule.epochs * spe:  # finished: nothing to time
                    finished = StageEstimate(stage, schedule.epochs, schedule.warmup_epochs, spe, 0.0, 0.0)
                    tell("estimate", estimate=finished)
                    continue
                tell("timing", stage=stage)
                tell("estimate", estimate=estimate_stage(stage, cfg, batch, data.num_classes, spe, cell))
    if distributed.is_main():
        request.run_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner(request, data, on_step, on_epoch_end)
    goal = None
    if request.latency_target_ms is not None:
        # rank 0 measures (or reloads) the latency table, every rank prices with the same one
        goal = distributed.on_main(_open_goal, request, data.num_classes, cell, tell)
    plots: list[str] = []
    summary: dict = dict(stage=request.stage, name=request.name, run_dir=str(request.run_dir))
    with torch.random.fork_rng(devices=[]):
        if request.stage == "path":
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
                    encoder=cfg.encoder,
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
    architecture = architecture_sha256(result)
    distributed.check_same(architecture, "decoded networks")
    if distributed.is_main():
        plots.append(str(render_graph(result, request.run_dir / "network.png")))
    summary.update(
        out=str(request.out),
        sha256=sha,
        architecture_sha256=architecture,
        parent_sha256=result.provenance.parent_sha256,
        wall_time_s=round(sum(r.wall_s for r in runner.runs.values()), 1),
        log=str(request.run_dir / LOG_FILE),
        plots=plots,
        epochs=result.provenance.epochs,
        parallel=distributed.describe(cfg.batch_size),
        discarded=request.discards or None,
    )
    return summary


def _open_goal(request: SearchRequest, num_classes: int, cell: Cell | None, tell) -> LatencyGoal:
    """Rank 0: the latency table of the search space, profiled unless cached (its plan and progress told),
    and the lower bound of what the space can emit against the target."""
    cfg = request.config
    profile = plan_space_profile(request.latency_size, cfg, num_classes, request.command)
    tell("latency-profile", profile=profile)
    table, _ = profile.run(lambda phase, done, total: tell("latency-progress", phase=phase, done=done, total=total))
    fastest = None if request.stage == "cell" else fastest_ms(table, cfg, num_classes, cell)
    tell("latency-ready", target_ms=request.latency_target_ms, fastest_ms=fastest)
    return LatencyGoal(table, request.latency_target_ms)


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
        encoder=cfg.encoder,
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
    if cfg.encoder is not None:
        levels = ", ".join(f"1/{lvl.reduction}" for lvl in cfg.encoder.levels)
        trained = "frozen" if cfg.encoder.freeze else "trained with the cells, from timm's initialisation"
        notes.append(f"over the timm encoder {cfg.encoder.model} (levels {levels}; {trained})")
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
