"""One stage-1 search step, partial channels (K=4) against full channels (K=1), measured side by side.

A step is what the search loop does per batch: a first-order architecture step on a held-apart batch,
then a weight step on a train batch; batch 8 each, 32x32 images, C=16, 8 cells, 10 classes, 2 threads.
Every mode runs in its own subprocess, so its peak RSS (getrusage) is its own. Two figures isolate the
step from the process around it: the step's RSS, its peak less the RSS at rest (imports and model built:
``import torch`` alone is ~0.5 GB with this CUDA build of torch and 0.2 GB with the 2.13.0+cpu wheel the
published figures were taken with, both by ru_maxrss on this machine), and its peak tensor memory, the
most bytes that tensors allocated during one step hold at once (from the profiler's allocation events,
exact and free of allocator effects). The modes alternate for ``--rounds`` rounds and the time is the
median over all their steps, so a change of load on a shared machine hits both; the CPU time of a step
(all threads) is printed beside the wall time, the steadier figure on a loaded machine. Two layouts:

- ``darts``: the cells at DARTS' CIFAR resolutions (no stem stride, 3 levels: 32, 16, 8, stepping down
  at cells 2 and 5 as DARTS' reduction cells do), to set beside the published DARTS (3.1-4.3 s/step,
  1.65 GB) and PC-DARTS (1.7-2.0 s, 0.80 GB) code measured on this machine at the same setting
  (shared/reference/FIDELITY.md section 5);
- ``search``: the proxy chain as ``rspnet-zoo search`` builds it (stem to 1/4, 4 levels down to 1/32):
  at 32x32 inputs its maps are 8x8 to 1x1, where the fixed cost of each op, not its width, sets the time.

    python benchmarks/bench_search_memory.py [--steps 5] [--warmup 2] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

LAYOUTS = {"darts": dict(stem_reduction=1, levels=3), "search": dict(stem_reduction=4, levels=4)}
MODES = {"partial (K=4)": 4, "full (K=1)": 1}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(layout: str, partial: int, steps: int, warmup: int, threads: int) -> dict:
    import torch

    from searchers.rspnet.bilevel import Bilevel
    from searchers.rspnet.budgets import CellStage
    from searchers.rspnet.supernet import CellSupernet

    torch.set_num_threads(threads)
    imports = rss_mb()
    torch.manual_seed(0)
    stage = CellStage(epochs=50, layers=8, channels=16, steps=4, partial=partial, order=1, **LAYOUTS[layout])
    model = CellSupernet(stage, num_classes=10).train()
    bilevel = Bilevel(model, stage)
    x, x_arch = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    y, y_arch = torch.randint(0, 10, (8, 32, 32)), torch.randint(0, 10, (8, 32, 32))
    before = rss_mb()
    times, cpu = [], []
    for i in range(warmup + steps):
        started, cpu_started = time.perf_counter(), time.process_time()
        bilevel.arch_step(x, y, x_arch, y_arch)
        bilevel.weight_step(x, y)
        if i >= warmup:
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        bilevel.arch_step(x, y, x_arch, y_arch)
        bilevel.weight_step(x, y)
    return dict(
        times=times,
        cpu=cpu,
        peak_rss_mb=peak,
        step_mb=peak - before,
        imports_mb=imports,
        tensor_mb=peak_tensor_bytes(prof) / 2**20,
        weights=sum(p.numel() for p in model.weight_parameters()),
    )


def peak_tensor_bytes(prof) -> int:
    """The most bytes live at once among the allocations made under ``prof`` (its [memory] events,
    as torch's own memory profiler reads them)."""
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if hasattr(event.extra_fields, "alloc_size"):
            events.append((event.start_time_ns, event.extra_fields.alloc_size))
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", nargs=2, metavar=("LAYOUT", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.steps, args.warmup, args.threads)))
        return

    print(
        f"one search step (arch + weight, first order), batch 8+8, 32x32, C=16, 8 cells, 10 classes, "
        f"{args.threads} threads; median of {args.rounds} x {args.steps} steps after {args.warmup} warm-up each; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for layout in LAYOUTS:
        runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode, k in MODES.items():
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        layout,
                        str(k),
                        "--steps",
                        str(args.steps),
                        "--warmup",
                        str(args.warmup),
                        "--threads",
                        str(args.threads),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        results = {}
        for mode, rounds in runs.items():
            times = [t for r in rounds for t in r["times"]]
            results[mode] = r = dict(
                times=times,
                s_per_step=statistics.median(times),
                weights=rounds[0]["weights"],
                cpu_per_step=statistics.median(t for r in rounds for t in r["cpu"]),
                peak_rss_mb=max(x["peak_rss_mb"] for x in rounds),
                step_mb=max(x["step_mb"] for x in rounds),
                imports_mb=min(x["imports_mb"] for x in rounds),
                tensor_mb=max(x["tensor_mb"] for x in rounds),
            )
            print(
                f"  [{layout}] {mode:14s} {r['s_per_step']:5.2f} s/step (CPU {r['cpu_per_step']:5.2f} s)   "
                f"peak RSS {r['peak_rss_mb']:5.0f} MB (imports {r['imports_mb']:.0f} MB, "
                f"the step {r['step_mb']:4.0f} MB)   "
                f"peak tensors {r['tensor_mb']:4.0f} MB   "
                f"{r['weights']:,} weights   steps {', '.join(f'{t:.2f}' for t in times)}"
            )
        p, f = results["partial (K=4)"], results["full (K=1)"]
        print(
            f"  [{layout}] partial / full: time {p['s_per_step'] / f['s_per_step']:.2f} (target <= 0.67), "
            f"CPU time {p['cpu_per_step'] / f['cpu_per_step']:.2f}, "
            f"step memory: peak tensors {p['tensor_mb'] / f['tensor_mb']:.2f}, RSS {p['step_mb'] / f['step_mb']:.2f} "
            f"(target <= 0.50); whole-process peak RSS {p['peak_rss_mb'] / f['peak_rss_mb']:.2f}"
        )
    print(
        "reference on this machine (FIDELITY.md 5): DARTS 1st order 3.1-4.3 s/step, 1.65 GB; "
        "PC-DARTS 1st order 1.7-2.0 s/step, 0.80 GB"
    )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
