"""latency: the device's latency table (``rspnet_zoo.perf.latency``), profiled for a search space, and predictions."""

from __future__ import annotations

import typer

from rspnet_zoo.cli import options
from rspnet_zoo.cli.options import ImageSize
from rspnet_zoo.cli.output import emit, print_table, shown, table

latency_app = typer.Typer(
    help="Latency model of this device: profile the search space's units, predict a spec's latency.",
    no_args_is_help=True,
)

SizeOpt = options.size("512x1024", "Input HxW (batch 1).")
DeviceOpt = options.device("cpu", help="cpu or cuda.")
ThreadsOpt = options.number(
    2,
    "--threads",
    kind=options.PROCESSES,
    help="Intra-op threads the latency is for (torch and onnxruntime); one table per count.",
)
RuntimeOpt = typer.Option(
    "eager", "--runtime", help="eager, optimized (rspnet_zoo.nn.fold) or onnxruntime (optimised, exported to ONNX)."
)
ClockOpt = typer.Option(
    "wall", "--clock", help="wall (elapsed), or cpu (process CPU time: steadier on a shared machine, one thread)."
)


def _target(device: str, runtime: str, threads: int, size: ImageSize, clock: str):
    import torch

    from rspnet_zoo.perf.latency import Target, check_target

    target = Target(device, runtime, threads, tuple(size), clock)
    check_target(target)
    torch.set_num_threads(threads)
    return target


@latency_app.command("profile")
def profile_command(
    budget: str = typer.Option("small", "--budget", help="The search budget whose space is profiled."),
    num_classes: int = options.number(19, "--num-classes", kind=options.CLASSES, help="Classes of the head."),
    size: ImageSize = SizeOpt,
    device: str = DeviceOpt,
    runtime: str = RuntimeOpt,
    threads: int = ThreadsOpt,
    clock: str = ClockOpt,
    as_json: bool = options.JSON,
) -> None:
    """Time every unit the budget's search can emit (ops at every level and width, paths, fusions, stems,
    head); a cached table with this device's fingerprint is reused, a stale one measured again."""
    from rspnet_zoo.perf.latency import profile
    from rspnet_zoo.textutil import command_line
    from searchers.rspnet.budgets import resolve_config
    from searchers.rspnet.latency_search import calibration_genotypes, space_genotypes

    target = _target(device, runtime, threads, size, clock)
    command = command_line(
        ["rspnet-zoo", "latency", "profile"],
        dict(
            budget=budget,
            num_classes=num_classes,
            size=target.size,
            device=device,
            runtime=runtime,
            threads=threads,
            clock=clock,
        ),
    )
    config = resolve_config(budget)
    genotypes = space_genotypes(config, num_classes)
    result, timed = profile(target, genotypes, command, calibrate_on=calibration_genotypes(config, num_classes))
    summary = dict(
        table=str(result.path),
        units=len(result.entries),
        timed=timed,
        fingerprint=result.fingerprint,
        fingerprint_id=result.fingerprint_id,
        overhead_ms=result.overhead_ms,
        provenance=result.provenance,
    )

    def human(console):
        reused = "all cached" if not timed else f"{timed} timed now"
        console.print(f"{summary['units']} units ({reused}) -> {shown(summary['table'])}", soft_wrap=True)
        console.print(f"  overhead per unit (whole networks against their summed units) {result.overhead_ms} ms")
        console.print(
            f"  fingerprint {summary['fingerprint_id']}: "
            + ", ".join(f"{k} {v}" for k, v in result.fingerprint.items())
        )

    emit(summary, human, as_json)


@latency_app.command("predict")
def predict_command(
    specs: list[str] = typer.Argument(..., help="Registered names or spec files."),
    measure: bool = typer.Option(False, "--measure", help="Also measure each network and print the ratio."),
    size: ImageSize = SizeOpt,
    device: str = DeviceOpt,
    runtime: str = RuntimeOpt,
    threads: int = ThreadsOpt,
    clock: str = ClockOpt,
    as_json: bool = options.JSON,
) -> None:
    """Predicted latency of each spec: the sum of the table's units over its compiled plan (units the
    table lacks are timed and added first)."""
    import os

    from rspnet_zoo.nn.model import GenotypeNet
    from rspnet_zoo.perf.latency import measure_model, open_table
    from rspnet_zoo.perf.threads import threads_phrase
    from rspnet_zoo.zoo.registry import resolve_genotype

    target = _target(device, runtime, threads, size, clock)
    latency_table = open_table(target, "rspnet-zoo latency predict")
    rows = []
    for ref in specs:
        genotype = resolve_genotype(ref)
        row = dict(spec=ref, predicted_ms=round(latency_table.predict(genotype), 3))
        if measure:
            row["measured_ms"] = round(measure_model(GenotypeNet(genotype, pretrained_encoders=False), target), 3)
            row["ratio"] = round(row["predicted_ms"] / row["measured_ms"], 3)
        rows.append(row)
    if latency_table.path is None:
        latency_table.save()
    summary = dict(
        table=str(latency_table.path),
        fingerprint_id=latency_table.fingerprint_id,
        load_average=list(os.getloadavg()),
        specs=rows,
    )

    def human(console):
        h, w = target.size
        out = table(
            f"1x3x{h}x{w} on {shown(device)}, {threads_phrase(threads)}, {runtime}, {clock} clock; "
            f"table {summary['fingerprint_id']}"
        )
        columns = ["spec", "predicted ms"] + (["measured ms", "predicted/measured"] if measure else [])
        for c in columns:
            out.add_column(c, justify="left" if c == "spec" else "right")
        for r in rows:
            cells = [shown(r["spec"]), f"{r['predicted_ms']:.2f}"]
            if measure:
                cells += [f"{r['measured_ms']:.2f}", f"{r['ratio']:.2f}"]
            out.add_row(*cells)
        print_table(console, out)
        console.print(f"  load average {', '.join(f'{v:.1f}' for v in summary['load_average'])}")

    emit(summary, human, as_json)
