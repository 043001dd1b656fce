"""bench and export: inference speed measured side by side, and files for other runtimes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rspnet_zoo.cli.output import JSON_OPTION_HELP, emit, print_table, table, warning_line
from rspnet_zoo.cli.train_commands import OptimizeOpt, ThreadsOpt, parse_device, parse_size
from rspnet_zoo.errors import ZooError

JsonOpt = typer.Option(False, "--json", help=JSON_OPTION_HELP)
ClassesOpt = typer.Option(None, "--num-classes", min=1, help="Classes of every model.", show_default="each model's own")

if TYPE_CHECKING:
    import torch


def _device(value: str) -> torch.device:
    import torch

    device = parse_device(value)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ZooError("--device cuda: no CUDA device is available here")
    return device


def bench(
    models: list[str] = typer.Argument(..., help="Registered names or spec files; the first is the reference."),
    size: str = typer.Option("512x1024", "--size", help="Input HxW."),
    batch: int = typer.Option(1, "--batch", min=1),
    threads: int | None = ThreadsOpt,
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    optimize: bool = OptimizeOpt,
    runtime: str = typer.Option("eager", "--runtime", help="eager, compile (torch.compile) or onnxruntime."),
    compare: list[str] = typer.Option(
        [], "--compare", help="Also measure this torchvision segmentation or timm model (repeatable)."
    ),
    num_classes: int | None = ClassesOpt,
    rounds: int = typer.Option(10, "--rounds", min=1, help="Timed calls per model, interleaved."),
    as_json: bool = JsonOpt,
) -> None:
    """Latency, images/s, FLOPs, peak memory and achieved GFLOP/s of models measured interleaved."""
    import torch

    from rspnet_zoo.perf.bench import RUNTIMES, load_model, measure, prepare
    from rspnet_zoo.perf.threads import threads_phrase, warn_if_starved

    if runtime not in RUNTIMES:
        raise typer.BadParameter(f"'{runtime}' is not one of {', '.join(RUNTIMES)}", param_hint="--runtime")
    h, w = parse_size(size, "--size")
    torch_device = _device(device)
    threads = threads or torch.get_num_threads()  # the free cores (rspnet_zoo.perf.threads) unless given
    torch.set_num_threads(threads)
    x = torch.randn(batch, 3, h, w)
    contenders = []
    for i, ref in enumerate([*models, *compare]):
        model = load_model(ref, num_classes)
        if num_classes is None:  # every model predicts as many classes as the first
            num_classes = getattr(model, "num_classes", None) if i == 0 else num_classes
        contenders.append(
            prepare(ref, model, x, runtime=runtime, optimized=optimize, threads=threads, device=torch_device)
        )
    with warn_if_starved(lambda: threads, warning_line, enabled=torch_device.type == "cpu"):
        result = measure(contenders, x, rounds=rounds, threads=threads, device=torch_device)

    def human(console):
        load = result["load_average"]
        optimized = " optimized" if optimize else ""
        timings = table(
            f"{batch}x3x{h}x{w} on {device}, {threads_phrase(threads)}, {runtime}{optimized}, median of {rounds} "
            f"interleaved rounds; fp32 matmul peak {result['matmul_peak_gflops_per_s']:.0f} GFLOP/s"
        )
        for column in ("model", "ms median", "ms p90", "CPU ms", "img/s", "x first"):
            timings.add_column(column, justify="left" if column == "model" else "right")
        work = table("what each call costs")
        for column in ("model", "params", "GMAC", "peak MiB", "GFLOP/s", "of peak"):
            work.add_column(column, justify="left" if column == "model" else "right")
        for r in result["models"]:
            timings.add_row(
                r["name"],
                f"{r['ms_median']:.1f}",
                f"{r['ms_p90']:.1f}",
                f"{r['cpu_ms_median']:.1f}",
                f"{r['images_per_s']:.2f}",
                f"{r['latency_ratio']:.2f}",
            )
            work.add_row(
                r["name"],
                f"{r['parameters']:,}",
                f"{r['gmac']:.2f}",
                "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}",
                f"{r['gflops_per_s']:.1f}",
                f"{r['peak_fraction']:.0%}",
            )
        print_table(console, timings)
        print_table(console, work)
        console.print(
            f"load average {' '.join(f'{v:.2f}' for v in load['before'])} before, "
            f"{' '.join(f'{v:.2f}' for v in load['after'])} after; 'x first' is latency relative to the first model"
        )

    emit(result, human, as_json)


def export(
    model: str = typer.Argument(..., help="A registered name[.tag], a built folder or a spec file (random weights)."),
    fmt: str = typer.Option(
        "onnx", "--format", help="onnx, torchscript (deprecated by PyTorch) or exported (torch.export)."
    ),
    size: str = typer.Option(None, "--size", help="Input HxW.", show_default="the model's input size"),
    dynamic_size: bool = typer.Option(False, "--dynamic-size", help="Any height and width (and batch for ONNX)."),
    optimize: bool = OptimizeOpt,
    out: Path | None = typer.Option(None, "--out", help="File to write.", show_default="./<name>.<onnx|pt|pt2>"),
    as_json: bool = JsonOpt,
) -> None:
    """An ONNX, TorchScript or torch.export file, checked in its runtime against the eager model."""
    from rspnet_zoo.interop.export import FORMATS, SUFFIXES, export_model
    from rspnet_zoo.nn.fold import optimize as optimize_model
    from rspnet_zoo.zoo.registry import create_genotype_net, load_trained, resolve_genotype

    if fmt not in FORMATS:
        raise typer.BadParameter(f"'{fmt}' is not one of {', '.join(FORMATS)}", param_hint="--format")
    if model.endswith(".json"):
        genotype = resolve_genotype(model)
        net = create_genotype_net(genotype.name, genotype).eval()
    else:
        net = load_trained(model)
    hw = parse_size(size, "--size") or tuple(net.pretrained_cfg["input_size"][1:])
    dest = out or Path(f"{net.genotype.name}{SUFFIXES[fmt]}")
    exported = optimize_model(net) if optimize else net
    info = export_model(exported, fmt, dest, hw, dynamic_size=dynamic_size, reference=net)
    info["optimized"] = optimize

    def human(console):
        console.print(
            f"wrote {info['path']} ({fmt}, {info['bytes'] / 2**20:.1f} MiB); checked in its runtime at "
            f"{', '.join(f'{h}x{w}' for h, w in info['checked_sizes'])}: max abs difference {info['max_abs_diff']:.2g}",
            soft_wrap=True,
        )

    emit(info, human, as_json)
