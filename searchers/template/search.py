"""The template search loop: the controller samples action strings, workers train and score them, PPO
updates the controller on their rewards, and the best one is emitted as a spec.

A run folder holds ``checkpoint-template.pt`` (controller and PPO state, the sampler's RNG, the batch
being evaluated, every sample row and the cache of evaluated strings), ``samples.jsonl`` (one row per
sample), ``stem.pt`` (the stem every sample starts from), ``rewards.png``, ``downsampling.png`` and
``best.md``. The checkpoint is rewritten atomically after every finished sample, so a killed search,
resumed with the same command and ``--resume``, loses only the samples that were being trained. A
string evaluated before (in this batch or any earlier one) takes its cached result and costs nothing.
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import torch

import rspnet_zoo
from rspnet_zoo.fsutil import atomic_path, atomic_write_text
from rspnet_zoo.spec.io import architecture_sha256
from rspnet_zoo.spec.models import Genotype, Provenance
from rspnet_zoo.spec.render import render_graph
from rspnet_zoo.training.loop import load_checkpoint
from searchers.requests import RunFiles
from searchers.run_folders import check_run_folder, load_resumable, write_spec
from searchers.template.controller import PPO, Controller
from searchers.template.evaluate import (
    EvalContext,
    Evaluator,
    SearchData,
    dataset_classes,
    evaluate_in_worker,
    init_worker,
    make_stem,
    time_sample,
)
from searchers.template.plots import best_table, plot_downsampling, plot_rewards
from searchers.template.request import TemplateSearchRequest, check_options
from searchers.template.space import Actions, TemplateSpace, config_text

CHECKPOINT = "checkpoint-template.pt"
SAMPLES = "samples.jsonl"
STEM = "stem.pt"
SEARCHER = "rspnet-zoo searchers (template, Nekrasov et al. WACV 2020)"


# what the checkpoint holds beside its settings (checked before a resume uses any of it)
CHECKPOINT_FIELDS = dict(ppo=dict, generator=torch.Tensor, rows=list, cache=dict, updates=list, wall_s=float)


class Pool:
    """Evaluation in ``workers`` spawned processes (one GPU each, round robin, when there are GPUs), or
    in this process for one worker."""

    def __init__(self, context: EvalContext, workers: int):
        count = torch.cuda.device_count()
        devices = [f"cuda:{i % count}" if count else "cpu" for i in range(workers)]
        if workers == 1:
            self.local = Evaluator(context, torch.device(devices[0]))
            self.executor = None
            return
        ctx = get_context("spawn")
        queue = ctx.SimpleQueue()
        for d in devices:
            queue.put(d)
        self.executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker, initargs=(context, queue))

    def run(self, jobs: dict[int, Actions], on_done) -> None:
        """Evaluate every job; ``on_done(slot, result)`` as each finishes."""
        if self.executor is None:
            for slot, actions in jobs.items():
                on_done(slot, self.local(actions))
            return
        futures = {self.executor.submit(evaluate_in_worker, a): slot for slot, a in jobs.items()}
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for f in done:
                on_done(futures.pop(f), f.result())

    def close(self, wait: bool = True) -> None:
        """Stop the workers; ``wait=False`` (an interrupted search) returns without waiting for samples in flight."""
        if self.executor is not None:
            self.executor.shutdown(wait=wait, cancel_futures=True)


def check_request(r: TemplateSearchRequest) -> None:
    """Refuse bad input in one line before anything runs; with --force, drop an earlier checkpoint."""
    check_options(r.workers, r.latency_target_ms, r.stem_weights)
    files = RunFiles(r.name, r.out, r.run_dir)
    inputs = [r.stem_weights] if r.stem_weights is not None else []
    check_run_folder(
        files, r.resume, r.force, r.settings(), r.shell_command or r.command, what="template search", inputs=inputs
    )


class TemplateSearch:
    """The state of one search: controller, PPO, sampler RNG, rows, cache, the batch in progress."""

    def __init__(self, request: TemplateSearchRequest):
        self.request = request
        cfg = request.config
        self.space = TemplateSpace.of(cfg)
        torch.manual_seed(request.seed)
        self.controller = Controller(self.space.choices(), cfg.controller_hidden, mask=self.space.allowed)
        self.ppo = PPO(
            self.controller, cfg.controller_lr, cfg.ppo_clip, cfg.entropy_weight, cfg.baseline_decay, cfg.ppo_epochs
        )
        self.generator = torch.Generator().manual_seed(request.seed)
        self.rows: list[dict] = []
        self.cache: dict[str, dict] = {}
        self.pending: dict | None = None  # {"actions": [...], "logp": [...], "batch": int}
        self.updates: list[dict] = []
        self.wall_s = 0.0
        self.clock = time.perf_counter()
        self.file = request.run_dir / CHECKPOINT

    @staticmethod
    def rows_in(run_dir: Path) -> list[dict]:
        """The sample rows of the checkpoint in ``run_dir``."""
        return load_checkpoint(run_dir / CHECKPOINT)["rows"]

    def load(self) -> None:
        state = load_resumable(self.file, self.request.settings(), CHECKPOINT_FIELDS)
        self.ppo.load_state_dict(state["ppo"])
        self.generator.set_state(state["generator"])
        self.rows, self.cache, self.pending = state["rows"], state["cache"], state["pending"]
        self.updates, self.wall_s = state["updates"], state["wall_s"]
        self.clock = time.perf_counter()

    def save(self) -> None:
        now = time.perf_counter()
        self.wall_s += now - self.clock
        self.clock = now
        state = dict(
            settings=self.request.settings(),
            ppo=self.ppo.state_dict(),
            generator=self.generator.get_state(),
            rows=self.rows,
            cache=self.cache,
            pending=self.pending,
            updates=self.updates,
            wall_s=self.wall_s,
        )
        with atomic_path(self.file) as tmp:
            torch.save(state, tmp)
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows)
        atomic_write_text(self.request.run_dir / SAMPLES, text)

    def sample_batch(self, batch: int, count: int) -> None:
        with torch.no_grad():
            taken, lp, _ = self.controller(batch=count, generator=self.generator)
        actions, logp = [tuple(a) for a in taken.tolist()], lp.tolist()
        self.pending = dict(actions=actions, logp=logp, batch=batch)

    def config_of(self, actions: Actions) -> str:
        return config_text(self.space.to_config(tuple(actions)))

    def record(self, slot: int, result: dict, cached: bool) -> None:
        actions = tuple(self.pending["actions"][slot])
        config = self.config_of(actions)
        if not cached:
            self.cache[config] = result
        self.rows.append(
            dict(
                index=len(self.rows),
                batch=self.pending["batch"],
                slot=slot,
                actions=list(actions),
                config=config,
                downsampling=self.space.downsampling(actions),
                cached=cached,
                **result,
            )
        )

    def finish_batch(self) -> None:
        batch = self.pending["batch"]
        rows = sorted((r for r in self.rows if r["batch"] == batch), key=lambda r: r["slot"])
        rewards = torch.tensor([r["reward"] for r in rows])
        update = dict(batch=batch, mean_reward=float(rewards.mean()))
        stats = self.ppo.update(torch.tensor(self.pending["actions"]), rewards, torch.tensor(self.pending["logp"]))
        update.update(loss=stats["loss"], baseline=stats["baseline"], entropy=stats["entropy"])
        self.updates.append(update)
        self.pending = None


def search(request: TemplateSearchRequest, on_sample=None, on_event=None, estimate: bool = False) -> dict:
    """Run the template search of ``request`` and write the emitted spec; returns a summary.
    ``on_sample(row, total)`` runs after each recorded sample (the CLI's progress); ``on_event(kind,
    details)``, with ``estimate``, hears 'timing' before the estimate's timed steps and 'estimate' (stem_s,
    sample_s: one sample on one worker, samples: left to train, workers) after them."""
    check_request(request)
    cfg = request.config
    request.run_dir.mkdir(parents=True, exist_ok=True)
    state = TemplateSearch(request)
    if request.resume:
        state.load()
    stem_file = request.run_dir / STEM
    new_stem = not (request.resume and stem_file.exists())
    data = SearchData(cfg, request.dataset, request.data_root, request.seed) if new_stem or estimate else None
    if estimate and on_event is not None:
        on_event("timing", {})
        timed = time_sample(cfg, data)
        substitute = new_stem and request.stem_weights is None
        left = cfg.architectures - len(state.rows)
        sample_s, stem_s = timed.sample_s(cfg), timed.stem_s(cfg) if substitute else 0.0
        on_event("estimate", dict(stem_s=stem_s, sample_s=sample_s, samples=left, workers=request.workers))
    if new_stem:
        with atomic_path(stem_file) as tmp:
            torch.save(make_stem(cfg, data, request.seed, request.stem_weights), tmp)
    threads = 1 if request.workers > 1 else torch.get_num_threads()
    context = EvalContext(
        cfg, request.dataset, request.data_root, stem_file, request.seed, request.latency_target_ms, threads
    )
    pool = Pool(context, request.workers)
    batches = math.ceil(cfg.architectures / cfg.strings_per_update)

    def finished(slot: int, result: dict, cached: bool = False) -> None:
        state.record(slot, result, cached)
        state.save()
        if on_sample is not None:
            on_sample(state.rows[-1], cfg.architectures)

    try:
        while state.pending is not None or len(state.updates) < batches:
            if state.pending is None:
                batch = len(state.updates)
                state.sample_batch(
                    batch, min(cfg.strings_per_update, cfg.architectures - batch * cfg.strings_per_update)
                )
                state.save()
            done = {r["slot"] for r in state.rows if r["batch"] == state.pending["batch"]}
            todo = {slot: tuple(a) for slot, a in enumerate(state.pending["actions"]) if slot not in done}
            jobs: dict[str, int] = {}  # config -> the first slot that evaluates it
            for slot, actions in todo.items():
                config = state.config_of(actions)
                if config not in state.cache and config not in jobs:
                    jobs[config] = slot
            pool.run({slot: todo[slot] for slot in jobs.values()}, finished)
            for slot, actions in todo.items():
                if slot not in jobs.values():
                    finished(slot, state.cache[state.config_of(actions)], cached=True)
            state.finish_batch()
            state.save()
    except BaseException:
        pool.close(wait=False)
        raise
    pool.close()
    return _emit(request, state)


def _emit(request: TemplateSearchRequest, state: TemplateSearch) -> dict:
    cfg = request.config
    rows = state.rows
    best = max(rows, key=lambda r: (r["reward"], -r["index"]))
    num_classes, class_names = dataset_classes(request.dataset, request.data_root)
    genotype: Genotype = state.space.decode(
        tuple(best["actions"]),
        agg_size=cfg.head_channels,
        num_classes=num_classes,
        name=request.name,
        description=(
            f"Found by `rspnet-zoo search template` (budget {request.budget}, seed {request.seed}) on the "
            f"{request.dataset} data set; see provenance for the command and the run."
        ),
        input_size=(3, cfg.image_size, cfg.image_size),
        class_names=class_names,
        provenance=_provenance(request, state, best),
    )
    sha = write_spec(genotype, request.out)
    run = request.run_dir
    plots = [
        str(plot_rewards(rows, run / "rewards.png")),
        str(plot_downsampling(rows, run / "downsampling.png")),
        str(render_graph(genotype, run / "network.png")),
    ]
    table = best_table(rows, run / "best.md")
    return dict(
        method="template",
        name=request.name,
        out=str(request.out),
        sha256=sha,
        architecture_sha256=architecture_sha256(genotype),
        run_dir=str(run),
        samples=len(rows),
        evaluated=len(state.cache),
        best=dict((k, best[k]) for k in ("index", "reward", "miou", "mean_acc", "fw_iou", "parameters", "config")),
        mean_reward_per_batch=[round(u["mean_reward"], 4) for u in state.updates],
        wall_time_s=round(state.wall_s, 1),
        log=str(run / SAMPLES),
        best_table=str(table),
        plots=plots,
        discarded=request.discards or None,
    )


def _provenance(request: TemplateSearchRequest, state: TemplateSearch, best: dict) -> Provenance:
    cfg = request.config
    stem = (
        f"stem: MobileNet-v2 blocks from {request.stem_weights}"
        if request.stem_weights
        else f"stem: substitute, randomly initialised and trained {cfg.stem_steps} Adam steps on meta-train"
    )
    latency = (
        f"; reward x (latency/{request.latency_target_ms} ms)^-0.07 above the target, latency measured on CPU"
        if request.latency_target_ms
        else ""
    )
    notes = (
        f"nas-segm config {best['config']}; reward {best['reward']:.4f} (mIoU {best['miou']:.4f}, mean acc "
        f"{best['mean_acc']:.4f}, fwIoU {best['fw_iou']:.4f}) on meta-val after {cfg.frozen_epochs} frozen-stem + "
        f"{cfg.end_to_end_epochs} end-to-end epochs; best of {len(state.rows)} samples ({len(state.cache)} "
        f"evaluated), M={cfg.templates}, N={cfg.blocks}; {stem}{latency}"
    )
    return Provenance(
        searcher=SEARCHER,
        stage="template",
        seed=request.seed,
        dataset=request.dataset,
        budget=request.budget,
        epochs=cfg.epochs,
        tool_version=rspnet_zoo.__version__,
        command=request.command or None,
        notes=notes,
    )
