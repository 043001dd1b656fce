"""bench and export: inference speed measured side by side, and files for other runtimes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rspnet_zoo.cli import options
from rspnet_zoo.cli.options import ImageSize, check_pixels, parse_device
from rspnet_zoo.cli.output import emit, print_table, shown, table, warning_line
from rspnet_zoo.errors import ZooError

if TYPE_CHECKING:
    import torch


def _device(value: str) -> torch.device:
    import torch

    device = parse_device(value)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ZooError("--device cuda: no CUDA device is available here")
    return device


def bench(
    models: list[str] = typer.Argument(
        ..., help="Registered names, spec files or exported FILE.onnx files; the first is the reference."
    ),
    size: ImageSize = options.size("512x1024", "Input HxW."),
    batch: int = options.number(1, "--batch", kind=options.BATCH),
    threads: int | None = options.THREADS,
    device: str = options.device("cpu", help="cpu or cuda."),
    optimize: bool = options.OPTIMIZE,
    runtime: str = typer.Option(
        "eager",
        "--runtime",
        help="eager, compile (torch.compile), onnxruntime or openvino (the [openvino] extra); an exported FILE.onnx "
        "runs in openvino if asked, else in onnxruntime.",
    ),
    compare: list[str] = typer.Option(
        [], "--compare", help="Also measure this torchvision segmentation or timm model (repeatable)."
    ),
    num_classes: int | None = options.number(
        None, "--num-classes", kind=options.CLASSES, help="Classes of every model.", show_default="each model's own"
    ),
    rounds: int = options.number(10, "--rounds", kind=options.COUNT, help="Timed calls per model, interleaved."),
    as_json: bool = options.JSON,
) -> None:
    """Latency, images/s, FLOPs, peak memory and achieved GFLOP/s of models measured interleaved."""
    check_pixels(batch, size)
    import torch

    from rspnet_zoo.perf.bench import RUNTIMES, load_model, measure, prepare, prepare_file
    from rspnet_zoo.perf.threads import threads_phrase, warn_if_starved
    from rspnet_zoo.predict.runtime import FILE_RUNTIMES, is_deployed_file, require

    if runtime not in RUNTIMES:
        raise typer.BadParameter(f"'{runtime}' is not one of {', '.join(RUNTIMES)}", param_hint="--runtime")
    if runtime == "openvino":
        require("openvino", extra="openvino")  # refused before any model is loaded
    h, w = size
    torch_device = _device(device)
    threads = threads or torch.get_num_threads()  # the free cores (rspnet_zoo.perf.threads) unless given
    torch.set_num_threads(threads)
    loaded = []  # every model first: a name that is wrong is refused before the input is allocated
    for i, ref in enumerate([*models, *compare]):
        if is_deployed_file(ref):  # an exported file runs as it is: in openvino if asked, else in onnxruntime
            loaded.append((ref, None))
            continue
        model = load_model(ref, num_classes)
        if num_classes is None:  # every model predicts as many classes as the first
            num_classes = getattr(model, "num_classes", None) if i == 0 else num_classes
        loaded.append((ref, model))
    x = torch.randn(batch, 3, h, w)
    file_runtime = runtime if runtime in FILE_RUNTIMES else "onnxruntime"
    contenders = [
        prepare_file(ref, x, threads=threads, device=torch_device, runtime=file_runtime)
        if model is None
        else prepare(ref, model, x, runtime=runtime, optimized=optimize, threads=threads, device=torch_device)
        for ref, model in loaded
    ]
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
                shown(r["name"]),
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
    size: ImageSize | None = options.size(None, "Input HxW.", show_default="the model's input size"),
    dynamic_size: bool = typer.Option(False, "--dynamic-size", help="Any height and width (and batch for ONNX)."),
    optimize: bool = options.OPTIMIZE,
    out: Path | None = typer.Option(
        None, "--out", help="File to write.", show_default="./<name>.<onnx|pt|pt2>, ./<name>.int8.onnx"
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing file that --out did not name."),
    quantize: str | None = typer.Option(
        None, "--quantize", help="int8: static post-training quantization (ONNX, QDQ; folds the model first)."
    ),
    calibration: str | None = typer.Option(
        None, "--calibration", help=f"--quantize: data set whose train split calibrates: {options.DATA_HELP}"
    ),
    root: Path | None = typer.Option(None, "--root", help="--quantize: the calibration data set's folder."),
    calibration_images: int = options.number(
        64, "--calibration-images", kind=options.COUNT, help="--quantize: images calibrating."
    ),
    min_agreement: float = options.number(
        0.98, "--min-agreement", kind=options.FRACTION, help="--quantize: least share of pixels keeping their class."
    ),
    keep_float: list[str] = typer.Option([], "--keep-float", help="--quantize: a node to keep float (repeatable)."),
    as_json: bool = options.JSON,
) -> None:
    """An ONNX, TorchScript or torch.export file, checked in its runtime against the eager model; with
    --quantize int8 an int8 ONNX file, checked against the float one."""
    from rspnet_zoo.fsutil import writable_output
    from rspnet_zoo.interop.export import FORMATS, SUFFIXES, export_model
    from rspnet_zoo.nn.fold import optimize as optimize_model
    from rspnet_zoo.zoo.registry import create_genotype_net, load_trained, ref_files, resolve_genotype

    if fmt not in FORMATS:
        raise typer.BadParameter(f"'{fmt}' is not one of {', '.join(FORMATS)}", param_hint="--format")
    genotype = resolve_genotype(model)
    net = create_genotype_net(genotype.name, genotype).eval() if model.endswith(".json") else load_trained(model)
    hw = size or tuple(net.pretrained_cfg["input_size"][1:])
    if quantize is not None:
        from rspnet_zoo.interop.quantize import Calibration, quantize_model

        if fmt != "onnx":
            raise ZooError(f"--quantize writes ONNX files, not --format {fmt}")
        if calibration is None:
            raise ZooError("--quantize needs --calibration DATA: the data set whose images calibrate the int8 ranges")
        dest = out or Path(f"{genotype.name}.{quantize}.onnx")
        writable_output(dest, replace=out is not None or force, avoid=ref_files(model))
        calibrate = Calibration(data=calibration, root=root, images=calibration_images)
        info = quantize_model(net, dest, hw, calibrate, precision=quantize, dynamic_size=dynamic_size,
                              min_agreement=min_agreement, keep_float=tuple(keep_float))  # fmt: skip
        emit(info, lambda console: _print_quantized(console, info), as_json)
        return
    dest = out or Path(f"{genotype.name}{SUFFIXES[fmt]}")
    writable_output(dest, replace=out is not None or force, avoid=ref_files(model))
    exported = optimize_model(net) if optimize else net
    info = export_model(exported, fmt, dest, hw, dynamic_size=dynamic_size, reference=net)
    info["optimized"] = optimize

    def human(console):
        console.print(
            f"wrote {shown(info['path'])} ({fmt}, {info['bytes'] / 2**20:.1f} MiB); checked in its runtime at "
            f"{', '.join(f'{h}x{w}' for h, w in info['checked_sizes'])}: max abs difference {info['max_abs_diff']:.2g}",
            soft_wrap=True,
        )

    emit(info, human, as_json)


def _print_quantized(console, info: dict) -> None:
    q = info["quantization"]
    calibrated, check = q["calibration"], q["check"]
    console.print(
        f"wrote {info['path']} ({info['precision']}, {info['bytes'] / 2**20:.1f} MiB; float "
        f"{info['float_bytes'] / 2**20:.1f} MiB), calibrated on {calibrated['images']} images of "
        f"{calibrated['data']} {calibrated['split']}; against the float file on {check['images']} more: "
        f"{check['agreement']:.2%} of pixels agree, logits SQNR {_db(check['logits_sqnr_db'])}",
        soft_wrap=True,
    )
    kept = ", ".join(f"{n['node']} ({n['why']})" for n in q["float_nodes"])
    console.print(f"kept float: {kept or 'nothing'}", soft_wrap=True)
    if info["sensitivity"]:
        layers = table("most sensitive layers: logits SQNR with that layer alone in int8")
        for column in ("node", "op", "SQNR"):
            layers.add_column(column, justify="right" if column == "SQNR" else "left")
        for row in info["sensitivity"]:
            layers.add_row(row["node"], row["op"], _db(row["sqnr_db"]))
        console.print(layers)


def _db(value: float | None) -> str:
    return "no noise" if value is None else f"{value:.1f} dB"
