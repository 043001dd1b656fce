"""search: the two RSPNet searches (searchers/), emitting a spec that validate and build accept."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from rspnet_zoo.cli import options
from rspnet_zoo.cli.options import ImageSize
from rspnet_zoo.cli.output import emit, errors, shown, warning_line
from rspnet_zoo.cli.parallel import data_parallel
from rspnet_zoo.errors import ZooError
from rspnet_zoo.textutil import command_line
from searchers.rspnet.budgets import budgets_help

# flag -> setting it overrides (see searchers.rspnet.budgets; --set reaches every setting)
FLAG_SETTINGS = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "image_size": "image_size",
    "samples": "samples",
    "layers": "cell.layers",
    "channels": "cell.channels",
    "partial": "cell.partial",
    "order": "order",
    "skip_cap": "cell.skip_cap",
    "path_layers": "path.layers",
    "path_channels": "path.channels",
    "topk": "path.topk",
    "threshold": "path.threshold",
    "two_back": "path.two_back",
}


def _parse_set(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is read as JSON (numbers, true/false, null, lists), else as text."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"'{item}' is not KEY=VALUE", param_hint="--set")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@data_parallel
def search(
    method: str = typer.Option(
        "rspnet", "--method", help="rspnet (the two-stage RSPNet search) or template (Nekrasov et al., WACV 2020)."
    ),
    workers: int | None = options.number(
        None, "--workers", kind=options.PROCESSES, help="--method template: worker processes that train samples."
    ),
    latency_target: float | None = options.number(
        None,
        "--latency-target",
        kind=options.MILLISECONDS,
        help="Milliseconds. rspnet: the searched network's latency at --size on this CPU (predicted from "
        "`rspnet-zoo latency`, then measured); template: slower samples get a lower reward.",
    ),
    size: ImageSize | None = options.size(
        None, "--latency-target with rspnet: the input HxW it is for.", show_default="512x1024"
    ),
    stem_weights: Path | None = typer.Option(
        None, "--stem-weights", help="--method template: safetensors with MobileNet-v2 stem blocks (nodes.0-6)."
    ),
    stage: str = typer.Option("both", "--stage", help="cell (stage 1), path (stage 2, needs --cell) or both."),
    budget: str = typer.Option("small", "--budget", help=budgets_help()),
    data: str = typer.Option(
        "synthetic", "--data", help="Data set (synthetic, cityscapes, camvid, folder); its train split is used."
    ),
    root: Path | None = typer.Option(None, "--root", help="Folder of an on-disk data set."),
    seed: int = options.seed("Seed of initialisation and data order."),
    name: str | None = typer.Option(
        None,
        "--name",
        help="Name of the emitted spec.",
        show_default="the --out file name, else from stage, budget and seed: rspnet_cell_small_s0",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Where the spec is written (registering it is a separate step, see the README).",
        show_default="<run dir>/<name>.json",
    ),
    cell: Path | None = typer.Option(None, "--cell", help="--stage path: the spec whose cell to search paths for."),
    cell_name: str | None = typer.Option(None, "--cell-name", help="Which cell of --cell, when it has several."),
    run_dir: Path | None = typer.Option(
        None,
        "--run-dir",
        help="Checkpoints, log.jsonl and plots.",
        show_default="searches/<name> in $RSPNET_ZOO_HOME",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the search whose checkpoints are in the run folder."),
    force: bool = typer.Option(
        False, "--force", help="Overwrite --out and discard an earlier search in the run folder."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs of each stage."),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    image_size: int | None = typer.Option(None, "--image-size", help="Square crop size."),
    samples: int | None = typer.Option(
        None, "--samples", help="Training images used (half weights, half architecture)."
    ),
    layers: int | None = typer.Option(None, "--layers", help="Cells of the stage-1 proxy network."),
    channels: int | None = typer.Option(None, "--channels", help="Stage-1 C at the first level."),
    partial: int | None = typer.Option(None, "--partial", help="Partial channels K (1: full channels, plain DARTS)."),
    order: int | None = typer.Option(None, "--order", help="1: first-order DARTS, 2: second order."),
    skip_cap: int | None = typer.Option(None, "--skip-cap", help="Most skip-connects in the decoded cell."),
    path_layers: int | None = typer.Option(None, "--path-layers", help="Layers L of the stage-2 grid."),
    path_channels: int | None = typer.Option(None, "--path-channels", help="Stage-2 F during the search."),
    topk: int | None = typer.Option(None, "--topk", help="Paths kept per node."),
    threshold: float | None = typer.Option(None, "--threshold", help="Keep paths whose attention reaches this."),
    two_back: bool | None = typer.Option(None, "--two-back/--no-two-back", help="Offer paths from two layers back."),
    settings: list[str] = typer.Option(
        [], "--set", metavar="KEY=VALUE", help="Any search setting, e.g. cell.steps=3 or path.rsp_ratio=0.25."
    ),
    threads: int | None = options.THREADS,
    amp: str | None = typer.Option(
        None,
        "--amp",
        help="--method rspnet: bf16 mixed precision for the supernet's forward passes.",
        show_default="off",
    ),
    progress: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="Show progress: bars on a terminal, else a line every 30 s (never with --json).",
    ),
    as_json: bool = options.JSON,
) -> None:
    """Search a cell (stage 1), the paths between levels (stage 2), or both, and write the spec."""
    flags = {k: v for k, v in locals().items() if k in FLAG_SETTINGS}  # the setting flags, as given
    if method == "template":
        from rspnet_zoo.cli.template_commands import run_template_search

        if "WORLD_SIZE" in os.environ:
            raise ZooError("--method template runs in one process (--workers spreads it); not under torchrun")
        rspnet_only = dict(
            stage=None if stage == "both" else stage, cell=cell, cell_name=cell_name, size=size, amp=amp, **flags
        )
        return run_template_search(
            budget=budget,
            data=data,
            root=root,
            seed=seed,
            name=name,
            out=out,
            run_dir=run_dir,
            resume=resume,
            force=force,
            workers=workers or 1,
            latency_target=latency_target,
            stem_weights=stem_weights,
            settings=_parse_set(settings),
            refused={f"--{k.replace('_', '-')}": v for k, v in rspnet_only.items()},
            threads=threads,
            progress=progress,
            as_json=as_json,
        )
    if method != "rspnet":
        raise ZooError(f"unknown search method '{method}' (choose rspnet or template)")
    template_only = {"--workers": workers, "--stem-weights": stem_weights}
    if any(v is not None for v in template_only.values()):
        given = ", ".join(k for k, v in template_only.items() if v is not None)
        raise ZooError(f"{given}: options of --method template")
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from rspnet_zoo.perf.threads import warn_if_starved
    from rspnet_zoo.zoo.home import zoo_home
    from searchers.progress import SearchProgress, interrupted_line
    from searchers.rspnet.budgets import resolve_config
    from searchers.rspnet.latency_search import latency_verdict
    from searchers.rspnet.runner import SearchRequest
    from searchers.rspnet.runner import search as run_search

    latency_size = tuple(size or (512, 1024))
    if size is not None and latency_target is None:
        raise ZooError("--size is the input size of --latency-target; give the target too")
    overrides = {FLAG_SETTINGS[k]: v for k, v in flags.items() if v is not None}
    overrides.update(_parse_set(settings))
    config = resolve_config(budget, overrides)
    if name is None:
        name = out.stem if out is not None else f"rspnet_{stage}_{budget}_s{seed}"
    given_run_dir, run_dir = run_dir, run_dir or zoo_home() / "searches" / name
    given_out, out = out, out or run_dir / f"{name}.json"
    if out.suffix != ".json":
        raise ZooError(f"{out}: the spec is written as a .json file")
    if threads is not None:
        torch.set_num_threads(threads)
    command = command_line(
        ["rspnet-zoo", "search"],
        dict(
            stage=stage,
            budget=budget,
            data=data,
            root=root,
            seed=seed,
            name=name,
            out=given_out,
            run_dir=given_run_dir,
            cell=cell,
            cell_name=cell_name,
            threads=threads,
            latency_target=latency_target,
            size=latency_size if latency_target is not None else None,
            amp=amp,
        ),
        overrides,
    )
    request = SearchRequest(
        stage=stage,
        budget=budget,
        config=config,
        name=name,
        out=out,
        run_dir=run_dir,
        dataset=data,
        data_root=root,
        seed=seed,
        cell_spec=cell,
        cell_name=cell_name,
        resume=resume,
        force=force,
        command=command,
        latency_target_ms=latency_target,
        latency_size=latency_size,
        amp=amp,
    )
    console = errors
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    bars = Progress(*columns, console=console) if console.is_terminal else None
    reporter = SearchProgress(
        request, plan=not as_json, show=progress and not as_json, bars=bars, threads=torch.get_num_threads
    )
    try:
        with warn_if_starved(torch.get_num_threads, warning_line):
            summary = run_search(request, on_step=reporter, on_start=reporter.start)
    except KeyboardInterrupt:
        summary = None  # said once the bars are gone
    finally:
        reporter.stop()
    if summary is None:
        print(f"rspnet-zoo: {shown(interrupted_line(request.run_dir, command))}", file=sys.stderr)
        raise typer.Exit(130)
    summary["command"] = command

    def human(console):
        console.print(
            f"wrote {summary['name']} -> {shown(summary['out'])}  sha256 {summary['sha256'][:12]}  "
            f"({summary['epochs']} epochs, {summary['wall_time_s']:.1f} s)",
            soft_wrap=True,
        )
        if "cell" in summary:
            c = summary["cell"]
            for i, step in enumerate(c["steps"]):
                console.print(f"  cell state {i + 2} = {step}")
            console.print(
                f"  skip-connects: {c['skips_before_cap']} decoded, {c['skips']} kept (cap {config.cell.skip_cap})"
            )
        if "paths" in summary:
            p = summary["paths"]
            multi = sum(len(v) > 1 for v in p["kept"].values())
            console.print(
                f"  paths: {len(p['kept'])} nodes kept ({multi} fuse several paths), "
                f"{len(p['dropped'])} dropped, {len(p['pruned'])} pruned"
            )
        if "latency" in summary:
            console.print(f"  {latency_verdict(summary['latency'])}")
        if summary["parent_sha256"]:
            console.print(f"  parent (stage-1 cell spec) sha256 {summary['parent_sha256'][:12]}")
        console.print(f"  log {shown(summary['log'])}; plots in {shown(summary['run_dir'])}", soft_wrap=True)
        console.print(f"  {summary['parallel']}")
        console.print(f"  reproduce: {shown(command)}", soft_wrap=True)

    emit(summary, human, as_json)
