"""search: the two search methods (searchers/), each a subcommand with its own options, emitting a spec that
validate and build accept.

``rspnet-zoo search`` runs the RSPNet method unless a method is named (``SearchGroup``): ``search rspnet``
and ``search template``, or ``--method NAME`` anywhere among the options (the spelling of earlier
releases). Each command parses, builds its request with the library's constructor (torch-free: a refused
run says so before torch loads), prints the plan's fixed part, runs the search and renders the summary.
The options both methods take are defined here once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from rspnet_zoo.cli import options
from rspnet_zoo.cli.options import ImageSize
from rspnet_zoo.cli.output import emit, shown, warning_line
from rspnet_zoo.cli.parallel import data_parallel, said_by_launcher
from rspnet_zoo.errors import ZooError
from searchers.progress import plan_head
from searchers.rspnet.budgets import budgets_help
from searchers.rspnet.request import SearchRequest, rspnet_request


class SearchGroup(TyperGroup):
    """``search`` with a default method: the first argument names one (``rspnet``, ``template``), else
    ``--method NAME`` does (removed before the method's own options are parsed), else it is ``rspnet``.
    ``search --help`` alone shows the methods; ``search`` alone runs the RSPNet method's defaults."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        if args and args[0] in self.commands or args == ["--help"]:
            return super().parse_args(ctx, args)
        method = "rspnet"
        for i, arg in enumerate(args):
            if arg == "--":
                break
            if arg == "--method" or arg.startswith("--method="):
                value = arg.partition("=")[2] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
                del args[i : i + (1 if "=" in arg else 2)]
                method = value
                break
        if method not in self.commands:
            raise ZooError(f"unknown search method '{method}' (choose {' or '.join(self.commands)})")
        return super().parse_args(ctx, [method, *args])


SEARCH_HELP = (
    "Search an architecture and write its spec: the RSPNet method (the default: `search --stage both` is "
    "`search rspnet --stage both`) or the template method (`search template`, or `--method template`)."
)

# the options both methods take
DATA = typer.Option("synthetic", "--data", help="Data set (synthetic, cityscapes, camvid, folder); its train split.")
ROOT = typer.Option(None, "--root", help="Folder of an on-disk data set.")
SEED = options.seed("Seed of initialisation and data order.")
OUT = typer.Option(
    None,
    "--out",
    help="Where the spec is written (registering it is a separate step, see docs/search.md).",
    show_default="<run dir>/<name>.json",
)
RUN_DIR = typer.Option(
    None, "--run-dir", help="Checkpoints, logs and plots.", show_default="searches/<name> in $RSPNET_ZOO_HOME"
)
RESUME = typer.Option(False, "--resume", help="Continue the search whose checkpoints are in the run folder.")
FORCE = typer.Option(False, "--force", help="Overwrite --out and discard an earlier search in the run folder.")
PROGRESS = typer.Option(
    True,
    "--progress/--no-progress",
    help="Show progress: bars on a terminal, else a line every 30 s (not with --json).",
)
JSON = options.JSON


def name_option(example: str) -> Any:
    return typer.Option(
        None,
        "--name",
        help="Name of the spec and its run folder.",
        show_default=f"the --out file name, else from the settings: {example}",
    )


def parse_set(items: list[str]) -> dict[str, Any]:
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


def interrupted(run_dir: Path, command: str) -> typer.Exit:
    """Say how to resume an interrupted search (once its bars are gone); the exit to raise."""
    from searchers.progress import interrupted_line

    print(f"rspnet-zoo: {interrupted_line(run_dir, command)}", file=sys.stderr)
    return typer.Exit(130)


def run_reported(run: Callable[[], dict], reporter: Any, request: Any, starved_warning: bool = True) -> dict:
    """A search run under its progress reporter: a warning when it got too little CPU, its bars gone before
    anything else is said, Ctrl-C turned into how to resume; the summary with the reproducing command."""
    import torch

    from rspnet_zoo.perf.threads import warn_if_starved

    try:
        with warn_if_starved(torch.get_num_threads, warning_line, enabled=starved_warning):
            summary = run()
    except KeyboardInterrupt:
        summary = None  # said once the bars are gone
    finally:
        reporter.stop()
    if summary is None:
        raise interrupted(request.run_dir, request.shell_command)
    summary["command"] = request.shell_command
    return summary


def say(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr, flush=True)


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


def request_of(options: dict[str, Any], processes: int | None = None) -> SearchRequest:
    """The library's request for the rspnet command's options (a dict of its parameters)."""
    o = options
    overrides = {FLAG_SETTINGS[k]: v for k, v in o.items() if k in FLAG_SETTINGS and v is not None}
    return rspnet_request(
        stage=o["stage"],
        budget=o["budget"],
        data=o["data"],
        root=o["root"],
        seed=o["seed"],
        name=o["name"],
        out=o["out"],
        run_dir=o["run_dir"],
        cell=o["cell"],
        cell_name=o["cell_name"],
        latency_target=o["latency_target"],
        size=o["size"],
        overrides={**overrides, **parse_set(o["settings"])},
        threads=o["threads"],
        amp=o["amp"],
        encoder=o["encoder"],
        freeze_encoder=o["freeze_encoder"],
        resume=o["resume"],
        force=o["force"],
        processes=processes,
    )


def rspnet_preflight(nproc: int, **options) -> None:
    """Under ``--nproc``, in the launcher: refuse a bad request and say the plan before torch loads."""
    request = request_of(options, processes=nproc)
    if not options["as_json"]:
        say([*plan_head(request), f"  starting {nproc} processes (torchrun) ..."])


@data_parallel(preflight=rspnet_preflight)
def rspnet(
    stage: str = typer.Option("both", "--stage", help="cell (stage 1), path (stage 2, needs --cell) or both."),
    budget: str = typer.Option("small", "--budget", help=budgets_help()),
    data: str = DATA,
    root: Path | None = ROOT,
    seed: int = SEED,
    name: str | None = name_option("rspnet_cell_small_s0"),
    out: Path | None = OUT,
    cell: Path | None = typer.Option(None, "--cell", help="--stage path: the spec whose cell to search paths for."),
    cell_name: str | None = typer.Option(None, "--cell-name", help="Which cell of --cell, when it has several."),
    encoder: str | None = typer.Option(
        None,
        "--encoder",
        metavar="TIMM_NAME",
        help="Search the cells and paths over this timm model's feature levels (a decoder; the spec's "
        "encoder node comes first). See docs/search.md.",
    ),
    freeze_encoder: bool = typer.Option(
        False, "--freeze-encoder", help="With --encoder: keep the encoder's weights as they are."
    ),
    run_dir: Path | None = RUN_DIR,
    resume: bool = RESUME,
    force: bool = FORCE,
    latency_target: float | None = options.number(
        None,
        "--latency-target",
        kind=options.MILLISECONDS,
        help="Milliseconds: the searched network's latency at --size on this CPU (predicted from "
        "`rspnet-zoo latency`, then measured).",
    ),
    size: ImageSize | None = options.size(None, "The input HxW --latency-target is for.", show_default="512x1024"),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs of each stage."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Per process.", show_default="the budget's global batch over the processes"
    ),
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
        None, "--amp", help="bf16 mixed precision for the supernet's forward passes.", show_default="off"
    ),
    progress: bool = PROGRESS,
    as_json: bool = JSON,
) -> None:
    """Search a cell (stage 1), the paths between levels (stage 2), or both, and write the spec."""
    request = request_of(locals())
    if not as_json and not said_by_launcher():
        say(plan_head(request))
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from searchers.progress import SearchProgress
    from searchers.rspnet.latency_search import latency_verdict
    from searchers.rspnet.runner import search

    if threads is not None:
        torch.set_num_threads(threads)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    bars = Progress(*columns, console=console) if console.is_terminal else None
    reporter = SearchProgress(
        request, plan=not as_json, show=progress and not as_json, bars=bars, threads=torch.get_num_threads
    )
    summary = run_reported(
        lambda: search(request, on_step=reporter.step, on_event=reporter, estimate=not as_json), reporter, request
    )

    def human(console):
        console.print(
            f"wrote {summary['name']} -> {shown(summary['out'])}  sha256 {summary['sha256'][:12]}, "
            f"architecture {summary['architecture_sha256'][:12]}  ({summary['epochs']} epochs, "
            f"{summary['wall_time_s']:.1f} s)",
            soft_wrap=True,
        )
        if "cell" in summary:
            c = summary["cell"]
            for i, step in enumerate(c["steps"]):
                console.print(f"  cell state {i + 2} = {step}")
            console.print(
                f"  skip-connects: {c['skips_before_cap']} decoded, {c['skips']} kept "
                f"(cap {request.config.cell.skip_cap})"
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
        console.print(f"  reproduce: {shown(request.shell_command)}", soft_wrap=True)

    emit(summary, human, as_json)
