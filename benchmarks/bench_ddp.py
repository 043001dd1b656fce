"""A search on 2 processes (torchrun, gloo, CPU) against 1 process with the same global batch, measured side by side.

Each run is the library's ``searchers.rspnet.runner.search`` (both stages) in a fresh process tree: 1 process
with the global batch, or ``torchrun --standalone --nproc_per_node 2`` with half of it per process. Every
rank reports its wall time (the search, imports excluded), its CPU time and its peak memory
(``resource.getrusage`` ru_maxrss). The two modes alternate for ``--rounds`` rounds; the medians are
printed with the load average before and after, since this machine is shared and its load moves.
Each process gets ``--threads`` torch threads (the default 1: 2 processes then use 2 cores, 1 uses 1).

    python benchmarks/bench_ddp.py [--rounds 2] [--batch 16] [--samples 64] [--epochs 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(out: Path, batch: int, samples: int, epochs: int, threads: int) -> None:
    import torch

    from rspnet_zoo.training import distributed
    from searchers.rspnet.budgets import resolve_config
    from searchers.rspnet.runner import SearchRequest, search

    torch.set_num_threads(threads)
    with distributed.process_group():
        per_process = batch // distributed.world_size()
        config = resolve_config("smoke", dict(batch_size=per_process, samples=samples, epochs=epochs, image_size=64))
        request = SearchRequest(
            stage="both", budget="smoke", config=config, name="bench", out=out / "bench.json", run_dir=out / "run"
        )
        distributed.barrier()
        started, cpu = time.perf_counter(), time.process_time()
        search(request)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        usage = resource.getrusage(resource.RUSAGE_SELF)
        row = dict(rank=distributed.rank(), wall_s=wall, cpu_s=cpu, maxrss_mb=usage.ru_maxrss / 1024)
        (out / f"rank{distributed.rank()}.json").write_text(json.dumps(row))


def run(nproc: int, args) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        worker_args = [
            __file__, "--worker", tmp, "--batch", str(args.batch), "--samples", str(args.samples),
            "--epochs", str(args.epochs), "--threads", str(args.threads),
        ]  # fmt: skip
        launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(args.threads))
        subprocess.run([sys.executable, *launcher, *worker_args], env=env, check=True, capture_output=True)
        return [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(nproc)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16, help="global batch")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.batch, args.samples, args.epochs, args.threads)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    runs: dict[int, list[list[dict]]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for nproc in runs:
            runs[nproc].append(run(nproc, args))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(
        f"search, both stages: global batch {args.batch}, {args.samples} images at 64x64, {args.epochs} epochs each, "
        f"{args.threads} thread(s) per process, {args.rounds} rounds (medians)"
    )
    print("| processes | rank | wall s | CPU s | peak RSS MB |\n|---|---|---|---|---|")
    walls = {}
    for nproc, rounds in runs.items():
        for rank in range(nproc):
            rows = [r[rank] for r in rounds]
            med = {k: statistics.median(row[k] for row in rows) for k in ("wall_s", "cpu_s", "maxrss_mb")}
            print(f"| {nproc} | {rank} | {med['wall_s']:.2f} | {med['cpu_s']:.2f} | {med['maxrss_mb']:.0f} |")
        walls[nproc] = statistics.median(max(r["wall_s"] for r in rows) for rows in rounds)
    print(f"wall time, 2 processes / 1 process: {walls[2] / walls[1]:.2f}")


if __name__ == "__main__":
    main()
