"""``rspnet-zoo search template`` (also ``search --method template``): the template-based search
(searchers/template/). Parse, build the request (torch-free), print the plan, run with progress for people
(a bar on a terminal, else a plain line at a steady interval), say how to resume after Ctrl-C, render."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from rspnet_zoo.cli import options
from rspnet_zoo.cli.output import emit, shown
from rspnet_zoo.cli.search_commands import (
    DATA,
    FORCE,
    JSON,
    OUT,
    PROGRESS,
    RESUME,
    ROOT,
    RUN_DIR,
    SEED,
    name_option,
    parse_set,
    run_reported,
    say,
)
from rspnet_zoo.errors import ZooError
from searchers.progress import template_plan_head
from searchers.template.budgets import budgets_help
from searchers.template.request import template_request


def template(
    budget: str = typer.Option("small", "--budget", help=budgets_help()),
    data: str = DATA,
    root: Path | None = ROOT,
    seed: int = SEED,
    name: str | None = name_option("template_small_s0"),
    out: Path | None = OUT,
    run_dir: Path | None = RUN_DIR,
    resume: bool = RESUME,
    force: bool = FORCE,
    workers: int = options.number(1, "--workers", kind=options.PROCESSES, help="Worker processes that train samples."),
    latency_target: float | None = options.number(
        None, "--latency-target", kind=options.MILLISECONDS, help="Milliseconds: slower samples get a lower reward."
    ),
    stem_weights: Path | None = typer.Option(
        None, "--stem-weights", help="safetensors with MobileNet-v2 stem blocks (nodes.0-6)."
    ),
    settings: list[str] = typer.Option(
        [], "--set", metavar="KEY=VALUE", help="Any budget setting, e.g. architectures=100 or lr=0.01."
    ),
    threads: int | None = options.THREADS,
    progress: bool = PROGRESS,
    as_json: bool = JSON,
) -> None:
    """Search nas-segm decoders by templates (Nekrasov et al., WACV 2020) and write the best as a spec."""
    if "WORLD_SIZE" in os.environ:
        raise ZooError("the template search runs in one process (--workers spreads it); not under torchrun")
    request = template_request(
        budget=budget, data=data, root=root, seed=seed, name=name, out=out, run_dir=run_dir, workers=workers,
        latency_target=latency_target, stem_weights=stem_weights, overrides=parse_set(settings), threads=threads,
        resume=resume, force=force,
    )  # fmt: skip
    if not as_json:
        say(template_plan_head(request))
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from searchers.progress import TemplateProgress
    from searchers.template.search import search

    if threads is not None:  # this process's threads; each worker process uses one
        torch.set_num_threads(threads)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bars = Progress(*columns, console=console) if console.is_terminal else None
    reporter = TemplateProgress(plan=not as_json, show=progress and not as_json, bars=bars)
    summary = run_reported(  # with worker processes this one mostly waits: its CPU time says nothing of theirs
        lambda: search(request, on_sample=reporter.sample, on_event=reporter, estimate=not as_json),
        reporter,
        request,
        starved_warning=workers == 1,
    )

    def human(console):
        best = summary["best"]
        console.print(
            f"wrote {summary['name']} -> {shown(summary['out'])}  sha256 {summary['sha256'][:12]}, "
            f"architecture {summary['architecture_sha256'][:12]}  ({summary['samples']} samples, "
            f"{summary['evaluated']} evaluated, {summary['wall_time_s']:.1f} s)",
            soft_wrap=True,
        )
        console.print(
            f"  best: sample {best['index']}, reward {best['reward']:.4f} (mIoU {best['miou']:.4f}), "
            f"{best['parameters']:,} parameters, config {best['config']}",
            soft_wrap=True,
        )
        console.print(f"  mean reward per batch: {summary['mean_reward_per_batch']}")
        console.print(
            f"  log {shown(summary['log'])}; table {shown(summary['best_table'])}; "
            f"plots in {shown(summary['run_dir'])}",
            soft_wrap=True,
        )
        console.print(f"  reproduce: {shown(request.shell_command)}", soft_wrap=True)

    emit(summary, human, as_json)
