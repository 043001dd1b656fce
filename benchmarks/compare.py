"""Every shipped RSPNet spec against torchvision's LRASPP MobileNetV3-Large, eager, optimised, in ONNX Runtime and int8.

One run, one input (1x3x512x1024, 19 classes, 2 threads), all contenders interleaved (see
``rspnet_zoo.perf.bench``); untrained weights, since speed does not depend on them. Each network runs eager,
optimised eager, optimised in onnxruntime and, where OpenVINO is installed, in OpenVINO; and as an int8 file
quantized by the same tool with the same calibration (``rspnet_zoo.interop.quantize``: what ``export
--quantize int8 --calibration synthetic --dynamic-size`` writes, every layer but the stem int8) in
onnxruntime (and OpenVINO). Printed: ms per image, parameters, GMAC, achieved GFLOP/s and its fraction of
the fp32 matmul peak measured in the same run, the speed-up of each runtime over the same model in eager
and over its float onnxruntime file, the largest difference between the optimised and the eager outputs,
spec -> module time for every shipped spec, and the load average.

    .venv/bin/python benchmarks/compare.py                 # the table in docs/benchmarks.md
    .venv/bin/python benchmarks/compare.py --size 128x256 --rounds 3   # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import tempfile
from pathlib import Path

import torch

from rspnet_zoo import optimize
from rspnet_zoo.interop.quantize import Calibration, quantize_model
from rspnet_zoo.perf.bench import build_times, load_model, measure, prepare, prepare_file
from rspnet_zoo.resources import shipped_specs

PEER = "lraspp_mobilenet_v3_large"
OPENVINO = importlib.util.find_spec("openvino") is not None
RUNS = (("eager", False), ("eager", True), ("onnxruntime", True)) + ((("openvino", True),) if OPENVINO else ())
FILE_RUNTIMES = ("onnxruntime", "openvino") if OPENVINO else ("onnxruntime",)
INT8_EXPORT_SIZE = (128, 128)  # calibrated at the synthetic size; the file takes any size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512x1024", help="HxW")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calibration-images", type=int, default=64, help="synthetic train images for int8")
    parser.add_argument("--json", help="also write the full result to this file")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, h, w)
    names = [p.stem for p in shipped_specs() if p.stem.startswith("rspnet_")] + [PEER]

    contenders, equal = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            torch.manual_seed(0)
            model = load_model(name, args.classes)
            with torch.inference_mode():
                out, fast = model(x), optimize(model)(x)
                equal[name] = (fast["out"] - out["out"] if isinstance(out, dict) else fast - out).abs().max().item()
            for runtime, optimized in RUNS:
                contenders.append(prepare(name, model, x, runtime=runtime, optimized=optimized, threads=args.threads))
            int8 = Path(tmp) / f"{name}.int8.onnx"
            calibration = Calibration(images=args.calibration_images)
            quantize_model(model, int8, INT8_EXPORT_SIZE, calibration, dynamic_size=True, min_agreement=0.0)
            for runtime in FILE_RUNTIMES:
                timed = prepare_file(int8, x, threads=args.threads, runtime=runtime)
                float_run = contenders[-1]  # the same network: its parameters and FLOPs, not the file's
                contenders.append(
                    dataclasses.replace(
                        timed, name=name, runtime=f"{runtime} int8", optimized=True,
                        parameters=float_run.parameters, flops=float_run.flops,
                    )
                )  # fmt: skip
        result = measure(contenders, x, rounds=args.rounds, threads=args.threads)
    result["optimized_max_abs_diff"] = equal
    result["spec_to_module_ms"] = build_times([str(p) for p in shipped_specs()])

    eager = {r["name"]: r["ms_median"] for r in result["models"] if r["runtime"] == "eager" and not r["optimized"]}
    onnx_float = {r["name"]: r["ms_median"] for r in result["models"] if r["runtime"] == "onnxruntime"}
    print(
        f"1x3x{h}x{w}, {args.classes} classes, {args.threads} threads, torch {torch.__version__}; median of "
        f"{args.rounds} interleaved rounds; fp32 matmul peak {result['matmul_peak_gflops_per_s']:.0f} GFLOP/s; "
        f"load average {result['load_average']['before'][0]:.2f} before, {result['load_average']['after'][0]:.2f} after"
    )
    print()
    print("| model | runtime | ms / image | x eager | x ORT fp32 | parameters | GMAC | GFLOP/s | of peak | CPU ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    by_runtime: dict[tuple[str, str], float] = {}
    for r in result["models"]:
        runtime = ("optimised, " if r["optimized"] and "int8" not in r["runtime"] else "") + r["runtime"]
        by_runtime[r["name"], runtime] = r["ms_median"]
        print(
            f"| {r['name']} | {runtime} | {r['ms_per_image']:.1f} | {eager[r['name']] / r['ms_median']:.2f} "
            f"| {onnx_float[r['name']] / r['ms_median']:.2f} | {r['parameters']:,} | {r['gmac']:.2f} "
            f"| {r['gflops_per_s']:.1f} | {r['peak_fraction']:.1%} | {r['cpu_ms_median']:.0f} |"
        )
    print()
    for runtime in [k[1] for k in by_runtime if k[0] == PEER]:
        ratios = ", ".join(
            f"{name} {by_runtime[name, runtime] / by_runtime[PEER, runtime]:.2f}x" for name in names if name != PEER
        )
        print(f"latency against {PEER}, {runtime}: {ratios}")
    print("optimised vs eager, max abs difference: " + ", ".join(f"{k} {v:.1e}" for k, v in equal.items()))
    print(
        "spec -> module, median ms (resolve + build): "
        + ", ".join(f"{k.rsplit('/', 1)[-1][:-5]} {v['total_ms']:.1f}" for k, v in result["spec_to_module_ms"].items())
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
