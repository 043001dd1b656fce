"""How long the CLI takes to start, against the cost of importing torch and timm, in one run.

Three contenders run as fresh processes, interleaved round by round so that load spikes hit them all:
``rspnet-zoo --help``, ``rspnet-zoo validate genotypes/rspnet_small.json`` and
``python -c "import torch, timm"``. Printed per contender: median wall and CPU (user+sys) seconds, the
ratio of medians to the torch+timm import, and the load average before and after. Then the modules that
``python -X importtime`` charges most to ``--help`` and to ``validate`` (cumulative), as evidence of what
they load (neither loads torch or timm).

Targets (issue 12): --help under half the torch+timm import, validate under three quarters of it.

    .venv/bin/python benchmarks/bench_startup.py             # 7 rounds
    .venv/bin/python benchmarks/bench_startup.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = "genotypes/rspnet_small.json"


def cli() -> list[str]:
    """The installed console script, as a user runs it; ``python -m rspnet_zoo`` where it is not installed."""
    script = shutil.which("rspnet-zoo", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "rspnet_zoo"]


CONTENDERS = {
    "rspnet-zoo --help": [*cli(), "--help"],
    "rspnet-zoo validate": [*cli(), "validate", SPEC],
    "import torch, timm": [sys.executable, "-c", "import torch, timm"],
}
BASELINE = "import torch, timm"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + sys of the child) seconds of one run."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def importtime_top(args: list[str], env: dict[str, str], n: int) -> list[tuple[int, str]]:
    """The n modules with the largest cumulative import time (microseconds) under ``rspnet-zoo ARGS``."""
    argv = [sys.executable, "-X", "importtime", "-m", "rspnet_zoo", *args]
    log = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT, env=env).stderr
    rows = []
    for line in log.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = line.split("|")
            rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--top", type=int, default=12, help="importtime rows to print")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80"}

    load_before = os.getloadavg()
    for argv in CONTENDERS.values():  # warm the file cache; not counted
        timed(argv, env)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in CONTENDERS}
    for _ in range(args.rounds):
        for name, argv in CONTENDERS.items():
            samples[name].append(timed(argv, env))
    load_after = os.getloadavg()

    wall = {name: statistics.median(w for w, _ in s) for name, s in samples.items()}
    cpu = {name: statistics.median(c for _, c in s) for name, s in samples.items()}
    print(f"{args.rounds} interleaved rounds; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'contender':<22} {'wall s':>8} {'cpu s':>8} {'wall ratio':>11} {'cpu ratio':>10}")
    for name in CONTENDERS:
        print(
            f"{name:<22} {wall[name]:>8.3f} {cpu[name]:>8.3f} "
            f"{wall[name] / wall[BASELINE]:>11.2f} {cpu[name] / cpu[BASELINE]:>10.2f}"
        )
    for command in (["--help"], ["validate", SPEC]):
        print(f"\npython -X importtime -m rspnet_zoo {' '.join(command)}, top {args.top} by cumulative time:")
        for cumulative, name in importtime_top(command, env, args.top):
            print(f"  {cumulative / 1e3:>8.1f} ms  {name}")


if __name__ == "__main__":
    main()
