"""Networks with glibc's default malloc against the same networks with freed memory kept (``rspnet_zoo.perf.memory``).

``keep_freed_memory`` changes a whole process for good, so each side is its own worker process holding
the same untrained models; the parent drives them in interleaved rounds (each round calls every model
once in each worker, alternating which worker goes first; one worker runs at a time) and prints, per
model, the median wall ms, CPU ms and minor page faults of a call on each side, and their ratio. The
load average is printed beside them.

    .venv/bin/python benchmarks/bench_memory.py                       # 1x3x512x1024, 2 threads
    .venv/bin/python benchmarks/bench_memory.py --size 128x256 --rounds 3 --models rspnet_small
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import time

MODELS = ["rspnet_small", "rspnet_c", "nas_segm_arch0", "lraspp_mobilenet_v3_large"]


def worker(conn, keep: bool, names: list[str], size: tuple[int, int], threads: int, classes: int) -> None:
    """Build the models, warm them up, then answer each model index with one timed call."""
    import torch

    from rspnet_zoo import keep_freed_memory
    from rspnet_zoo.perf.bench import load_model

    torch.set_num_threads(threads)
    kept = keep_freed_memory() if keep else False
    models = []
    for name in names:
        torch.manual_seed(0)
        models.append(load_model(name, classes).eval())
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        for model in models:
            for _ in range(2):
                model(x)
        conn.send(kept)
        while (i := conn.recv()) is not None:
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            wall, cpu = time.perf_counter(), time.process_time()
            models[i](x)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            conn.send((wall * 1e3, cpu * 1e3, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, help="zoo names, spec files or torchvision names")
    parser.add_argument("--size", default="512x1024", help="HxW")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    ctx = mp.get_context("spawn")
    sides = {}
    for keep in (False, True):
        parent, child = ctx.Pipe()
        process = ctx.Process(target=worker, args=(child, keep, args.models, size, args.threads, args.classes))
        process.start()
        sides[keep] = (parent, process)
    kept = sides[True][0].recv()
    sides[False][0].recv()
    if not kept:
        raise SystemExit("this allocator is not glibc's: keep_freed_memory leaves it as it is")

    load_before = os.getloadavg()
    calls = {(keep, i): [] for keep in sides for i in range(len(args.models))}
    for r in range(args.rounds):
        for i in range(len(args.models)):
            for keep in (r % 2 == 0, r % 2 == 1):
                conn = sides[keep][0]
                conn.send(i)
                calls[keep, i].append(conn.recv())
    for conn, process in sides.values():
        conn.send(None)
        process.join()

    print(
        f"1x3x{size[0]}x{size[1]}, {args.classes} classes, {args.threads} threads, eager, untrained; median of "
        f"{args.rounds} interleaved rounds; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(f"{'model':28s} {'default ms':>10s} {'kept ms':>8s} {'speed-up':>8s} {'CPU ms':>13s} {'page faults':>17s}")
    for i, name in enumerate(args.models):
        med = {keep: [statistics.median(c[k] for c in calls[keep, i]) for k in range(3)] for keep in sides}
        d, k = med[False], med[True]
        print(
            f"{name:28s} {d[0]:10.1f} {k[0]:8.1f} {d[0] / k[0]:7.2f}x {d[1]:6.0f} -> {k[1]:4.0f} "
            f"{d[2]:8.0f} -> {k[2]:6.0f}"
        )


if __name__ == "__main__":
    main()
