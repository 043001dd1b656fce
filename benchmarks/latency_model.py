"""The latency model against the clock: predicted vs measured latency of the shipped specs and of random
specs from the search space (issue 10: within 20% on this machine).

1. ``rspnet_zoo.perf.latency.profile`` builds (or reloads) the table of the ``--budget`` search space at
   ``--size``, ``--threads``, ``--clock``, calibrated on the space's full lattice (never on the specs
   checked here).
2. ``--random`` specs are drawn from the same space (``searchers.rspnet.random_search.random_network``: a
   random cell of the decoded shape, random attention decoded by the search's own rule, a random width of
   ``latency_widths``).
3. Each spec, shipped and random, is predicted from the table and then measured as a whole network
   (``measure_model``: the same clock and threads) in ``--rounds`` interleaved rounds, so load changes
   hit every spec alike; its measured latency is the median.

It prints predicted, measured, their ratio and the spread of the rounds per spec, the median and worst
error, and writes everything to ``--out`` (JSON). ``--table NEW.json`` measures a table afresh in the
same run (the cached one may date from another load). On a machine shared with other jobs, ``--clock
cpu --threads 1`` measures the process's own CPU time, which the other jobs do not inflate.

    python benchmarks/latency_model.py [--size 256x512] [--threads 1] [--clock cpu] [--random 10]
        [--runtime eager|optimized|onnxruntime] [--rounds 3] [--table FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import torch

from rspnet_zoo.data.synthetic import NUM_CLASSES
from rspnet_zoo.fsutil import atomic_write_text
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.perf.latency import RUNTIMES, Target, measure_model, profile
from rspnet_zoo.resources import shipped_specs
from rspnet_zoo.spec.io import load_spec
from searchers.rspnet.budgets import resolve_config
from searchers.rspnet.latency_search import calibration_genotypes, space_genotypes
from searchers.rspnet.random_search import random_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="small")
    parser.add_argument("--size", default="256x512")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", default="cpu", choices=("wall", "cpu"))
    parser.add_argument("--runtime", default="eager", choices=RUNTIMES)
    parser.add_argument("--random", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved measurements of each spec (median).")
    parser.add_argument(
        "--table", type=Path, default=None, help="Table file (default: the cache); a new path measures it afresh."
    )
    parser.add_argument("--specs", nargs="*", default=None, help="Spec files (default: every shipped spec).")
    parser.add_argument("--out", type=Path, default=Path("/tmp/latency_model.json"))
    args = parser.parse_args()

    h, w = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(args.threads)
    target = Target("cpu", args.runtime, args.threads, (h, w), args.clock)
    config = resolve_config(args.budget)
    started = time.perf_counter()
    table, timed = profile(
        target,
        space_genotypes(config, NUM_CLASSES),
        f"python benchmarks/latency_model.py --budget {args.budget} --size {args.size} --runtime {args.runtime}",
        path=args.table,
        calibrate_on=calibration_genotypes(config, NUM_CLASSES),
    )
    print(
        f"table {table.path}: {len(table.entries)} units ({timed} timed now, {time.perf_counter() - started:.0f} s), "
        f"overhead {table.overhead_ms} ms per unit (per network {table.provenance.get('overhead_ms_per_network')})"
    )
    rng = random.Random(args.seed)
    specs = [load_spec(p) for p in (args.specs or shipped_specs())]
    specs += [random_network(config, rng, NUM_CLASSES, f"random_{i}") for i in range(args.random)]
    predicted = [table.predict(g) for g in specs]  # times the units the space's table lacks
    models = [GenotypeNet(g) for g in specs]
    measured: list[list[float]] = [[] for _ in specs]
    loads: list[float] = []
    for r in range(args.rounds):  # interleaved: a load change hits every spec alike
        for i, model in enumerate(models):
            measured[i].append(measure_model(model, target))
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}/{args.rounds} done, load {loads[-1]:.2f}", flush=True)
    rows = []
    print(f"1x3x{h}x{w}, {args.threads} threads, {args.runtime}, {args.clock} clock, median of {args.rounds} rounds")
    print(f"{'spec':<22} {'predicted ms':>12} {'measured ms':>12} {'ratio':>6} {'spread':>7}")
    for genotype, p, times in zip(specs, predicted, measured):
        m = statistics.median(times)
        row = dict(
            spec=genotype.name,
            predicted_ms=round(p, 3),
            measured_ms=round(m, 3),
            ratio=round(p / m, 4),
            rounds_ms=[round(t, 3) for t in times],
        )
        rows.append(row)
        spread = (max(times) - min(times)) / m
        print(f"{row['spec']:<22} {p:>12.2f} {m:>12.2f} {row['ratio']:>6.3f} {100 * spread:>6.0f}%")
    errors = [abs(r["ratio"] - 1) for r in rows]
    within = sum(e <= 0.2 for e in errors)
    print(
        f"error |predicted/measured - 1|: median {100 * statistics.median(errors):.1f}%, "
        f"worst {100 * max(errors):.1f}%; {within}/{len(rows)} within 20%"
    )
    result = dict(
        target=table.fingerprint,
        table=str(table.path),
        overhead_ms=table.overhead_ms,
        provenance=table.provenance,
        rows=rows,
        median_error=statistics.median(errors),
        worst_error=max(errors),
        within_20_percent=within,
        load_average=loads,
        seconds=round(time.perf_counter() - started, 1),
    )
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
