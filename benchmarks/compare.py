"""Every shipped RSPNet spec against torchvision's LRASPP MobileNetV3-Large, eager, optimised and in ONNX Runtime.

One run, one input (1x3x512x1024, 19 classes, 2 threads), all contenders interleaved (see
``rspnet_zoo.perf.bench``); untrained weights, since speed does not depend on them. Printed: ms per image,
parameters, GMAC, achieved GFLOP/s and its fraction of the fp32 matmul peak measured in the same run,
the speed-up of each runtime over the same model in eager, the largest difference between the
optimised and the eager outputs, spec -> module time for every shipped spec, and the load average.

    .venv/bin/python benchmarks/compare.py                 # the table in docs/benchmarks.md
    .venv/bin/python benchmarks/compare.py --size 128x256 --rounds 3   # a smoke run
"""

from __future__ import annotations

import argparse
import json

import torch

from rspnet_zoo import optimize
from rspnet_zoo.perf.bench import build_times, load_model, measure, prepare
from rspnet_zoo.resources import shipped_specs

PEER = "lraspp_mobilenet_v3_large"
RUNS = (("eager", False), ("eager", True), ("onnxruntime", True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512x1024", help="HxW")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", help="also write the full result to this file")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, h, w)
    names = [p.stem for p in shipped_specs() if p.stem.startswith("rspnet_")] + [PEER]

    contenders, equal = [], {}
    for name in names:
        torch.manual_seed(0)
        model = load_model(name, args.classes)
        with torch.inference_mode():
            out, fast = model(x), optimize(model)(x)
            equal[name] = (fast["out"] - out["out"] if isinstance(out, dict) else fast - out).abs().max().item()
        for runtime, optimized in RUNS:
            contenders.append(prepare(name, model, x, runtime=runtime, optimized=optimized, threads=args.threads))
    result = measure(contenders, x, rounds=args.rounds, threads=args.threads)
    result["optimized_max_abs_diff"] = equal
    result["spec_to_module_ms"] = build_times([str(p) for p in shipped_specs()])

    eager = {r["name"]: r["ms_median"] for r in result["models"] if r["runtime"] == "eager" and not r["optimized"]}
    print(
        f"1x3x{h}x{w}, {args.classes} classes, {args.threads} threads, torch {torch.__version__}; median of "
        f"{args.rounds} interleaved rounds; fp32 matmul peak {result['matmul_peak_gflops_per_s']:.0f} GFLOP/s; "
        f"load average {result['load_average']['before'][0]:.2f} before, {result['load_average']['after'][0]:.2f} after"
    )
    print()
    print("| model | runtime | ms / image | x eager | parameters | GMAC | GFLOP/s | of peak | CPU ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["models"]:
        runtime = ("optimised, " if r["optimized"] else "") + r["runtime"]
        print(
            f"| {r['name']} | {runtime} | {r['ms_per_image']:.1f} | {eager[r['name']] / r['ms_median']:.2f} "
            f"| {r['parameters']:,} | {r['gmac']:.2f} | {r['gflops_per_s']:.1f} | {r['peak_fraction']:.1%} "
            f"| {r['cpu_ms_median']:.0f} |"
        )
    print()
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
