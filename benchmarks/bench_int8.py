"""Float against int8 ONNX files of the shipped synthetic weights: mIoU from the files themselves, latency side by side.

For each of rspnet_small.synth and rspnet_c.synth, in one run: the float ONNX export of the folded model and
the int8 one (what ``rspnet-zoo export MODEL --quantize int8 --calibration synthetic --dynamic-size`` writes:
onnxruntime's static quantization, calibrated on ``--calibration-images`` images of the synthetic train
split), both evaluated on the synthetic val split by ``rspnet-zoo eval``'s loop (``run_eval``) beside the
torch model, then every file timed interleaved in onnxruntime (``rspnet_zoo.perf.bench.measure``: rotating
order, medians and 90th percentiles of wall time, median CPU time, the load average before and after).
With ``--peer``, torchvision's LRASPP MobileNetV3-Large joins the timing, untrained (latency only),
quantized by the same tool with the same calibration. Each file is also timed without its output tail (the
float upsampling of the logits to the input size, which both precisions share): the rows "... body" say
what the int8 network itself gains. No timed assertions: a shared machine's load moves every figure; the
ratios within one run are what to read.

    .venv/bin/python benchmarks/bench_int8.py --peer             # the docs/benchmarks.md table
    .venv/bin/python benchmarks/bench_int8.py --size 128x256 --rounds 3 --calibration-images 8   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import onnx
import onnxruntime
import torch

from rspnet_zoo import optimize
from rspnet_zoo.interop.export import export_model
from rspnet_zoo.interop.quantize import Calibration, output_tail, quantize_model
from rspnet_zoo.perf.bench import load_model, measure, prepare_file
from rspnet_zoo.training.tasks import EvalRequest, run_eval
from rspnet_zoo.zoo.registry import load_trained

MODELS = ("rspnet_small.synth", "rspnet_c.synth")
PEER = "lraspp_mobilenet_v3_large"
EXPORT_SIZE = (128, 128)  # the synthetic val size; the files take any size


def export_pair(name: str, net: torch.nn.Module, folder: Path, images: int, min_agreement: float) -> dict:
    """The float and the int8 file of ``net``: what ``rspnet-zoo export`` writes, with and without --quantize."""
    float_file, int8_file = folder / f"{name}.onnx", folder / f"{name}.int8.onnx"
    export_model(optimize(net), "onnx", float_file, EXPORT_SIZE, dynamic_size=True, reference=net)
    info = quantize_model(
        net, int8_file, EXPORT_SIZE, Calibration(images=images), dynamic_size=True, min_agreement=min_agreement
    )
    return dict(float=float_file, int8=int8_file, quantization=info["quantization"], int8_label=info["precision"])


def body_of(file: Path) -> Path:
    """``file`` without its output tail: the tail's input becomes the graph's output."""
    proto = onnx.load(str(file))
    graph, tail = proto.graph, set(output_tail(proto.graph))
    for node in [n for n in graph.node if n.name in tail]:
        graph.node.remove(node)
        graph.output.remove(next(o for o in graph.output if o.name in node.output))
        graph.output.append(onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
    body = file.with_name(file.name.replace(".onnx", ".body.onnx"))
    onnx.save(proto, str(body))
    return body


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {os.cpu_count()} CPUs; onnxruntime {onnxruntime.__version__}; commit {commit or '?'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512x1024", help="HxW of the timed input")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--peer", action="store_true", help=f"also time {PEER} (untrained) in float and int8")
    parser.add_argument("--json", help="also write the full result to this file")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(args.threads)

    rows, files = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            net = load_trained(name)
            pair = export_pair(name, net, Path(tmp), args.calibration_images, min_agreement=0.98)
            eager = run_eval(EvalRequest(model=name))["miou"]
            for kind in ("float", "int8"):
                miou = run_eval(EvalRequest(model=str(pair[kind])))["miou"]
                rows.append(dict(model=name, kind=kind, miou=miou, torch_miou=eager, **pair))
                files.append(pair[kind])
            for kind in ("float", "int8"):
                rows.append(dict(model=f"{name} body", kind=kind, miou=None, torch_miou=None, body=True, **pair))
                files.append(body_of(pair[kind]))
        if args.peer:
            torch.manual_seed(0)
            peer = load_model(PEER, num_classes=9)  # untrained: its int8 file is timed, not scored
            pair = export_pair(PEER, peer, Path(tmp), args.calibration_images, min_agreement=0.0)
            for kind in ("float", "int8"):
                rows.append(dict(model=PEER, kind=kind, miou=None, torch_miou=None, **pair))
                files.append(pair[kind])
        x = torch.randn(1, 3, h, w)
        contenders = [prepare_file(f, x, threads=args.threads) for f in files]
        timing = measure(contenders, x, rounds=args.rounds, threads=args.threads)
        for row, timed, file in zip(rows, timing["models"], files):
            row.update(timed, bytes=file.stat().st_size)

    load = timing["load_average"]
    print(
        f"1x3x{h}x{w}, {args.threads} threads, onnxruntime, median of {args.rounds} interleaved rounds; "
        f"{machine()}; load average {' '.join(f'{v:.2f}' for v in load['before'])} before, "
        f"{' '.join(f'{v:.2f}' for v in load['after'])} after; val mIoU on the synthetic val split (100 images, "
        f"128x128) from each file; int8 calibrated on {args.calibration_images} synthetic train images"
    )
    print()
    print("| model | file | val mIoU | vs float | ms median | ms p90 | CPU ms | x float (wall) | x float (CPU) | MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    floats = {r["model"]: r for r in rows if r["kind"] == "float"}
    for r in rows:
        reference = floats[r["model"]]
        miou = "-" if r["miou"] is None else f"{r['miou']:.4f}"
        delta = "-" if r["miou"] is None else f"{r['miou'] - reference['miou']:+.4f}"
        label = "float32" if r["kind"] == "float" else r["int8_label"]
        print(
            f"| {r['model']} | {label} | {miou} | {delta} | {r['ms_median']:.1f} | {r['ms_p90']:.1f} "
            f"| {r['cpu_ms_median']:.1f} | {reference['ms_median'] / r['ms_median']:.2f} "
            f"| {reference['cpu_ms_median'] / r['cpu_ms_median']:.2f} | {r['bytes'] / 2**20:.2f} |"
        )
    print()
    for r in rows:
        if r["kind"] == "int8" and not r.get("body"):
            check = r["quantization"]["check"]
            kept = ", ".join(f"{n['node']} ({n['why']})" for n in r["quantization"]["float_nodes"])
            torch_miou = "" if r["torch_miou"] is None else f"torch model's val mIoU {r['torch_miou']:.4f}; "
            print(
                f"{r['model']}: {torch_miou}int8 against float on {check['images']} train images past the "
                f"calibration ones: {check['agreement']:.2%} of pixels agree, logits SQNR "
                f"{check['logits_sqnr_db']:.1f} dB; kept float: {kept}"
            )
    if args.json:
        result = dict(timing, rows=[{k: str(v) if isinstance(v, Path) else v for k, v in r.items()} for r in rows])
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
