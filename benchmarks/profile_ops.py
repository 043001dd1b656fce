"""Where the time goes, per operator type: zoo networks against LRASPP, eager (optimised) and in onnxruntime.

For each network (untrained: speed does not depend on the weights) at 1x3x512x1024, 19 classes, a fixed
thread count: the optimised eager model under ``torch.profiler`` (self CPU time per aten op) and its ONNX
export (dynamic size, as ``rspnet-zoo export --optimize --dynamic-size`` writes it) in onnxruntime with
its profiler on (kernel time per node type, after onnxruntime's own graph rewrites); and with ``--int8``
the int8 file too (``rspnet_zoo.interop.quantize``). The shares say what holds a network's achieved
GFLOP/s below the machine's peak: convolutions against everything that moves memory without arithmetic
(resampling, concatenation, layout reorders, pads, slices, elementwise ops). Also printed: the largest
nodes, and the output upsampling's share (the ``Resize`` that makes the graph's output).

    .venv/bin/python benchmarks/profile_ops.py                       # rspnet_small against LRASPP
    .venv/bin/python benchmarks/profile_ops.py --models rspnet_small --int8 --size 128x256 --runs 2   # smoke
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from rspnet_zoo import optimize
from rspnet_zoo.interop.export import export_model
from rspnet_zoo.interop.quantize import Calibration, quantize_model
from rspnet_zoo.perf.bench import load_model
from rspnet_zoo.predict.runtime import require, session_options

PEER = "lraspp_mobilenet_v3_large"
SHOWN = 10


def eager_profile(model: torch.nn.Module, x: torch.Tensor, runs: int) -> dict[str, float]:
    """Self CPU ms per call of each aten op of the optimised ``model``."""
    fast = optimize(model)
    with torch.inference_mode():
        fast(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                fast(x)
    return {e.key: e.self_cpu_time_total / 1000 / runs for e in prof.key_averages() if e.self_cpu_time_total > 0}


def onnx_profile(file: Path, x: np.ndarray, threads: int, runs: int) -> tuple[dict[str, float], dict[str, float]]:
    """Kernel ms per call of each node type and of each node of ``file`` in onnxruntime."""
    onnxruntime = require("onnxruntime")
    options = session_options(threads)
    options.enable_profiling = True
    options.profile_file_prefix = str(file.with_suffix(""))
    session = onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: x})
    for _ in range(runs):
        session.run(None, {name: x})
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = collections.defaultdict(float)
    by_node: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"] / 1000 / (runs + 1)
            by_node[f"{e['name'][: -len('_kernel_time')]} ({e['args']['op_name']})"] += e["dur"] / 1000 / (runs + 1)
    return dict(by_op), dict(by_node)


def shares(title: str, times: dict[str, float], shown: int = SHOWN) -> None:
    total = sum(times.values())
    print(f"  {title}: {total:.1f} ms per call")
    for key, ms in sorted(times.items(), key=lambda kv: -kv[1])[:shown]:
        print(f"    {key[:60]:60} {ms:8.2f} ms {ms / total:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["rspnet_small", PEER])
    parser.add_argument("--size", default="512x1024", help="HxW")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--int8", action="store_true", help="also profile each network's int8 file")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, h, w)
    print(
        f"1x3x{h}x{w}, {args.classes} classes, {args.threads} threads, {args.runs} profiled calls; torch "
        f"{torch.__version__}, onnxruntime {require('onnxruntime').__version__}; load average "
        + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(0)
            model = load_model(name, args.classes)
            print(f"\n{name}")
            shares("eager, optimised, self CPU time per aten op", eager_profile(model, x, args.runs))
            files = {"onnxruntime fp32": Path(tmp) / f"{name}.onnx"}
            export_model(
                optimize(model), "onnx", files["onnxruntime fp32"], (128, 128), dynamic_size=True, reference=model
            )
            if args.int8:
                files["onnxruntime int8"] = Path(tmp) / f"{name}.int8.onnx"
                quantize_model(
                    model,
                    files["onnxruntime int8"],
                    (128, 128),
                    Calibration(images=16),
                    dynamic_size=True,
                    min_agreement=0.0,
                )
            for label, file in files.items():
                by_op, by_node = onnx_profile(file, x.numpy(), args.threads, args.runs)
                shares(f"{label}, kernel time per node type", by_op)
                shares(f"{label}, largest nodes", by_node, shown=5)
            print(f"  load average now {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
