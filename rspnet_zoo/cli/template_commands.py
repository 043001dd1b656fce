"""``rspnet-zoo search --method template``: the template-based search (searchers/template/search.py).

The search command declares the options; this module turns them into a TemplateSearchRequest, runs it
with progress for people (a bar on a terminal, else a plain line at a steady interval), says how to
resume after Ctrl-C, and prints the summary.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from rspnet_zoo.cli.output import emit, errors, shown, warning_line
from rspnet_zoo.errors import ZooError
from rspnet_zoo.textutil import command_line


def run_template_search(
    *,
    budget: str,
    data: str,
    root: Path | None,
    seed: int,
    name: str | None,
    out: Path | None,
    run_dir: Path | None,
    resume: bool,
    force: bool,
    workers: int,
    latency_target: float | None,
    stem_weights: Path | None,
    settings: dict[str, Any],
    refused: dict[str, Any],
    threads: int | None,
    progress: bool,
    as_json: bool,
) -> None:
    """``refused``: options of the RSPNet search that were given (flag -> value); they mean nothing here."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rspnet_zoo.perf.threads import warn_if_starved
    from rspnet_zoo.zoo.home import zoo_home
    from searchers.progress import SampleProgress, interrupted_line
    from searchers.template.budgets import resolve_template_budget
    from searchers.template.search import TemplateSearchRequest, search

    given = [flag for flag, value in refused.items() if value is not None]
    if given:
        raise ZooError(f"{', '.join(given)}: not an option of --method template")
    config = resolve_template_budget(budget, settings)
    if threads is not None:  # this process's threads; each worker process uses one
        torch.set_num_threads(threads)
    name = name or (out.stem if out is not None else f"template_{budget}_s{seed}")
    given_run_dir, run_dir = run_dir, run_dir or zoo_home() / "searches" / name
    given_out, out = out, out or run_dir / f"{name}.json"
    options = dict(
        method="template",
        budget=budget,
        data=data,
        root=root,
        seed=seed,
        name=name,
        out=given_out,
        run_dir=given_run_dir,
        workers=workers,
        latency_target=latency_target,
        stem_weights=stem_weights,
    )
    command = command_line(["rspnet-zoo", "search"], options, settings)
    request = TemplateSearchRequest(
        budget=budget,
        config=config,
        name=name,
        out=out,
        run_dir=run_dir,
        dataset=data,
        data_root=root,
        seed=seed,
        workers=workers,
        latency_target_ms=latency_target,
        stem_weights=stem_weights,
        resume=resume,
        force=force,
        command=command,
    )
    console = errors
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bars = Progress(*columns, console=console) if progress and not as_json and console.is_terminal else None
    task = None

    def on_bar(row: dict, total: int) -> None:
        nonlocal task
        if task is None:  # shown from the first sample on, so bad input stays one line
            bars.start()
            task = bars.add_task("template search", total=total)
        cached = " (cached)" if row["cached"] else ""
        bars.update(
            task, completed=row["index"] + 1, description=f"template search, reward {row['reward']:.3f}{cached}"
        )

    on_sample = on_bar if bars is not None else SampleProgress() if progress and not as_json else None
    try:  # with worker processes this one mostly waits: its CPU time says nothing of theirs
        with warn_if_starved(torch.get_num_threads, warning_line, enabled=workers == 1):
            summary = search(request, on_sample=on_sample)
    except KeyboardInterrupt:
        summary = None  # said once the bar is gone
    finally:
        if task is not None:  # rich's stop() writes a newline even for bars never started
            bars.stop()
    if summary is None:
        print(f"rspnet-zoo: {shown(interrupted_line(request.run_dir, command))}", file=sys.stderr)
        raise typer.Exit(130)
    summary["command"] = command

    def human(console):
        best = summary["best"]
        console.print(
            f"wrote {summary['name']} -> {shown(summary['out'])}  sha256 {summary['sha256'][:12]}  "
            f"({summary['samples']} samples, {summary['evaluated']} evaluated, {summary['wall_time_s']:.1f} s)",
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
        console.print(f"  reproduce: {shown(command)}", soft_wrap=True)

    emit(summary, human, as_json)
