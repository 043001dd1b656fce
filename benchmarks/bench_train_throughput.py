"""Training throughput of rspnet_small with the GPU-minded options against the defaults, on this machine's CPU.

Configurations, each a fresh rspnet_small trained by the library's own loop (``rspnet_zoo.training.loop.train``)
on the synthetic set, data loading included:

    defaults                         fp32, NCHW, data loaded in the training process
    bf16 + channels_last + 2 workers --amp bf16 --channels-last --workers 2
    (with --each, also every option alone)

The configurations run interleaved (every round trains each once, in a rotating order) so that a change
of load on a shared machine hits all of them alike. Per configuration: the median images/s over the
timed steps of all rounds (the first step of each run, which starts the loader workers, is not timed),
the CPU time per image of the training process and its loader workers, the cores those got on average
(CPU time over wall time: far below the threads asked for, the machine was busy with other work), the
ratio of the medians to the defaults', and the median of the per-round ratios (each round's run against the
defaults' run of the same round: the figure that a drift of the load between rounds moves least).
The load average is printed before and after. Whether bf16 pays on a CPU depends on native bf16
instructions (AVX-512 BF16, AMX); the flags found are printed.

    .venv/bin/python benchmarks/bench_train_throughput.py                  # 256x256 crops, batch 8
    .venv/bin/python benchmarks/bench_train_throughput.py --each --rounds 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path

import torch

from rspnet_zoo.data import build_dataset
from rspnet_zoo.perf.bench import load_model
from rspnet_zoo.training.loop import train

CPU = torch.device("cpu")
COMBINED = dict(amp="bf16", channels_last=True, num_workers=2)


def configurations(each: bool) -> dict[str, dict]:
    configs = {"defaults": {}, "bf16 + channels_last + 2 workers": COMBINED}
    if each:
        configs.update(
            {"bf16": dict(amp="bf16"), "channels_last": dict(channels_last=True), "2 workers": dict(num_workers=2)}
        )
    return configs


def cpu_s() -> float:
    """CPU time of this process and of its finished children (the loader workers of earlier runs)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def one_run(options: dict, data, batch_size: int, steps: int, seed: int) -> tuple[list[float], float, float, int]:
    """Per-step images/s (the first step left out), CPU and wall seconds and images of one fresh training run."""
    torch.manual_seed(seed)
    model = load_model("rspnet_small", data.num_classes)
    rates: list[float] = []
    begun, started = cpu_s(), time.perf_counter()
    train(
        model,
        data,
        iterations=steps + 1,
        batch_size=batch_size,
        device=CPU,
        seed=seed,
        on_step=lambda s: rates.append(s["images_per_s"]) if s["step"] > 1 else None,
        **{"num_workers": 0, **options},
    )
    return rates, cpu_s() - begun, time.perf_counter() - started, (steps + 1) * batch_size


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    found = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return ", ".join(found) or "none of avx512f, avx512_bf16, amx_bf16"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--each", action="store_true", help="also every option alone")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"torch {torch.__version__}, {args.threads} threads on {cores} cores; CPU flags: {cpu_flags()}")
    shape = f"{args.crop}x{args.crop} crops, batch {args.batch_size}"
    print(f"rspnet_small, {shape}, {args.steps} timed steps x {args.rounds} rounds")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    data = build_dataset(
        "synthetic",
        "train",
        crop=(args.crop, args.crop),
        train=True,
        seed=args.seed,
        length=(args.steps + 1) * args.batch_size,
    )
    configs = configurations(args.each)
    rates: dict[str, list[float]] = {name: [] for name in configs}
    per_round: dict[str, list[float]] = {name: [] for name in configs}  # each run's median img/s
    cpu: dict[str, float] = dict.fromkeys(configs, 0.0)
    wall: dict[str, float] = dict.fromkeys(configs, 0.0)
    images: dict[str, int] = dict.fromkeys(configs, 0)
    names = list(configs)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            step_rates, seconds, elapsed, count = one_run(configs[name], data, args.batch_size, args.steps, args.seed)
            rates[name] += step_rates
            per_round[name].append(statistics.median(step_rates))
            cpu[name] += seconds
            wall[name] += elapsed
            images[name] += count
            print(f"  round {r + 1} {name}: median {statistics.median(step_rates):.2f} img/s", flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    base = statistics.median(rates["defaults"])
    header = f"{'configuration':34}{'img/s (median)':>16}{'CPU s / img':>13}{'CPU/wall':>10}{'vs defaults':>13}"
    print(f"\n{header}{'paired':>9}")
    for name in configs:
        median = statistics.median(rates[name])
        paired = statistics.median(a / b for a, b in zip(per_round[name], per_round["defaults"]))
        cores_used = cpu[name] / wall[name]
        print(
            f"{name:34}{median:>16.2f}{cpu[name] / images[name]:>13.3f}{cores_used:>10.2f}"
            f"{median / base:>12.2f}x{paired:>8.2f}x"
        )


if __name__ == "__main__":
    main()
