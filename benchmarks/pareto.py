"""The accuracy-latency picture (issue 10): mIoU on the synthetic benchmark against measured latency for the
shipped RSPNet specs, ``--latency-target`` searches at three targets, random specs of the same search
space, and torchvision's LRASPP MobileNetV3-Large.

1. LRASPP is timed first; the three search targets are ``--target-fractions`` of its latency (or
   ``--targets`` in ms), so the picture means the same on any machine.
2. ``rspnet-zoo search --stage both --latency-target MS`` runs once per target on ``--budget``'s space.
3. ``--random`` specs are drawn from the same space (``searchers.rspnet.random_search.random_network``: a random cell,
   random attention decoded by the search's own rule, a random width).
4. Every network is timed in one interleaved run (``rspnet_zoo.perf.bench``: 1x3xHxW, ``--classes``,
   ``--threads``, eager, untrained weights) and trained from scratch at the quality benchmark's
   budget (``bench_search_quality.py``: iterations, batch, crop, learning rate, seed), then scored
   on the synthetic val split.

Writes ``pareto.csv``, ``pareto.md`` and ``pareto.png`` (mIoU against latency, log x, the random
specs' front drawn) under ``--out``, and says whether each searched spec lies on or above the random front.

    python benchmarks/pareto.py                  # the real run (hours on 2 cores)
    python benchmarks/pareto.py --quick          # a smoke check (smoke search budget, tiny sizes)
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from rspnet_zoo.data import build_dataset  # noqa: E402
from rspnet_zoo.data.synthetic import NUM_CLASSES  # noqa: E402
from rspnet_zoo.fsutil import atomic_path, atomic_write_text  # noqa: E402
from rspnet_zoo.perf.bench import load_model, measure, prepare  # noqa: E402
from rspnet_zoo.resources import shipped_specs  # noqa: E402
from rspnet_zoo.spec.io import dump_spec  # noqa: E402
from rspnet_zoo.training.loop import evaluate, train  # noqa: E402
from searchers.rspnet.budgets import resolve_config  # noqa: E402
from searchers.rspnet.latency_search import latency_verdict  # noqa: E402
from searchers.rspnet.random_search import random_network  # noqa: E402

PEER = "lraspp_mobilenet_v3_large"
QUICK = dict(budget="smoke", size="64x128", rounds=1, random=2, iterations=2, batch_size=2, crop=32)
COLUMNS = ("group", "name", "latency_ms", "parameters", "gmac", "miou")


def time_models(refs: list[str], size: tuple[int, int], classes: int, threads: int, rounds: int) -> dict:
    """Eager latency, parameters and GMAC of every ref, measured interleaved in one run."""
    torch.set_num_threads(threads)
    x = torch.randn(1, 3, *size)
    contenders = []
    for ref in refs:
        torch.manual_seed(0)
        contenders.append(prepare(ref, load_model(ref, classes), x, runtime="eager", threads=threads))
    result = measure(contenders, x, rounds=rounds, threads=threads)
    return {r["name"]: r for r in result["models"]} | {"load_average": result["load_average"]}


def search(target_ms: float, args: argparse.Namespace, out: Path) -> Path:
    """One latency-targeted search through the CLI, as a user runs it; its spec file."""
    spec = out / f"searched_{target_ms:.0f}ms.json"
    if args.reuse_searches and spec.is_file():
        print(f"  reused {spec.name} (searched by an earlier run into {out})")
        return spec
    command = [
        sys.executable, "-m", "rspnet_zoo", "search", "--stage", "both", "--budget", args.budget,
        "--data", "synthetic", "--seed", str(args.seed), "--latency-target", f"{target_ms:.3f}",
        "--size", args.size, "--threads", str(args.threads), "--name", f"searched_{target_ms:.0f}ms",
        "--out", str(spec), "--run-dir", str(out / "runs" / f"{target_ms:.0f}ms"), "--force", "--json",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"search for {target_ms:.1f} ms failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    verdict = latency_verdict(json.loads(done.stdout)["latency"])
    print(f"  searched {spec.name} ({time.perf_counter() - started:.0f} s): {verdict}")
    return spec


def train_and_score(ref: str, args: argparse.Namespace, train_set, val_set) -> float:
    torch.set_num_threads(args.train_threads)
    torch.manual_seed(args.seed)
    model = load_model(ref, train_set.num_classes)
    train(
        model,
        train_set,
        iterations=args.iterations,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=torch.device("cpu"),
    )
    return evaluate(model, val_set, batch_size=16, device=torch.device("cpu"))["miou"]


def front(rows: list[dict]) -> list[dict]:
    """The rows no other row beats on both latency and mIoU, fastest first."""
    best, out = -1.0, []
    for row in sorted(rows, key=lambda r: (r["latency_ms"], -r["miou"])):
        if row["miou"] > best:
            out.append(row)
            best = row["miou"]
    return out


def on_or_above(row: dict, random_front: list[dict]) -> bool:
    """No random spec is at least as fast and strictly more accurate."""
    return not any(r["latency_ms"] <= row["latency_ms"] and r["miou"] > row["miou"] for r in random_front)


def plot(rows: list[dict], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    styles = {
        "random": ("tab:gray", "o"),
        "searched": ("tab:red", "*"),
        "shipped": ("tab:blue", "s"),
        "peer": ("k", "D"),
    }
    for group, (color, marker) in styles.items():
        pts = [r for r in rows if r["group"] == group]
        if pts:
            size = 120 if group == "searched" else 40
            ax.scatter(
                [r["latency_ms"] for r in pts], [r["miou"] for r in pts], c=color, marker=marker, s=size, label=group
            )
        if group != "random":
            for r in pts:  # on a white ground above every marker, so no point hides a name
                ax.annotate(
                    r["name"],
                    (r["latency_ms"], r["miou"]),
                    fontsize=7,
                    xytext=(4, 3),
                    textcoords="offset points",
                    zorder=5,
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.85),
                )
    line = front([r for r in rows if r["group"] == "random"])
    if line:
        ax.step(
            [r["latency_ms"] for r in line],
            [r["miou"] for r in line],
            where="post",
            c="tab:gray",
            ls="--",
            lw=1,
            label="random front",
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms per image (log scale)")
    ax.set_ylabel("val mIoU (synthetic)")
    ax.set_title("\n".join(textwrap.wrap(title, 100)), fontsize=8)  # the header is long: wrapped, not cut
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def markdown(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| group | network | ms / image | parameters | GMAC | val mIoU |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: r["latency_ms"]):
        lines.append(
            f"| {r['group']} | {r['name']} | {r['latency_ms']:.1f} | {r['parameters']:,} | {r['gmac']:.2f} "
            f"| {r['miou']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def replot(out: Path) -> None:
    """The picture of an earlier run, from the table it wrote (the header is pareto.md's first line)."""
    with open(out / "pareto.csv", newline="") as f:
        rows = [
            dict(r, latency_ms=float(r["latency_ms"]), parameters=int(r["parameters"]), gmac=float(r["gmac"]),
                 miou=float(r["miou"]))
            for r in csv.DictReader(f)
        ]  # fmt: skip
    header = (out / "pareto.md").read_text().splitlines()[0]
    with atomic_path(out / "pareto.png") as tmp:
        tmp.write_bytes(plot(rows, header))
    print(f"wrote {out / 'pareto.png'} from {out / 'pareto.csv'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: " + json.dumps(QUICK))
    parser.add_argument("--budget", default="small", help="search budget: its space, its search schedule")
    parser.add_argument("--target-fractions", type=float, nargs=3, default=(0.25, 0.5, 1.0), help="x LRASPP")
    parser.add_argument("--targets", type=float, nargs=3, help="search targets in ms (instead of fractions)")
    parser.add_argument("--random", type=int, default=10)
    parser.add_argument(
        "--reuse-searches",
        action="store_true",
        help="take the specs an earlier run searched into --out (searched_<ms>ms.json) instead of searching again",
    )
    parser.add_argument("--size", default="512x1024", help="HxW the latency is for")
    parser.add_argument("--classes", type=int, default=19, help="classes of the timed networks")
    parser.add_argument("--threads", type=int, default=2, help="threads of the timing and the searches")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds (median)")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("pareto"))
    parser.add_argument(
        "--replot", action="store_true", help="draw --out/pareto.png again from its pareto.csv and pareto.md only"
    )
    args = parser.parse_args()
    if args.replot:
        replot(args.out)
        return
    if args.quick:
        vars(args).update(QUICK)
    size = tuple(int(v) for v in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)

    peer_ms = time_models([PEER], size, args.classes, args.threads, args.rounds)[PEER]["ms_median"]
    targets = args.targets or [f * peer_ms for f in args.target_fractions]
    print(f"{PEER}: {peer_ms:.1f} ms at 1x3x{args.size}; search targets " + ", ".join(f"{t:.1f} ms" for t in targets))

    groups = {str(p.stem): "shipped" for p in shipped_specs() if p.stem.startswith("rspnet_")}
    groups |= {str(search(t, args, args.out)): "searched" for t in targets}
    config, rng = resolve_config(args.budget), random.Random(args.seed)
    for i in range(args.random):
        path = args.out / f"random_{i}.json"
        atomic_write_text(path, dump_spec(random_network(config, rng, NUM_CLASSES, f"random_{i}")))
        groups[str(path)] = "random"
    groups[PEER] = "peer"

    timed = time_models(list(groups), size, args.classes, args.threads, args.rounds)
    crop = (args.crop, args.crop)
    train_set = build_dataset("synthetic", "train", crop=crop, train=True)
    val_set = build_dataset("synthetic", "val", size=crop)
    rows = []
    for ref, group in groups.items():
        started = time.perf_counter()
        miou = train_and_score(ref, args, train_set, val_set)
        t = timed[ref]
        rows.append(
            dict(
                group=group,
                name=Path(ref).stem,
                latency_ms=t["ms_median"],
                parameters=t["parameters"],
                gmac=t["gmac"],
                miou=miou,
            )
        )
        seconds = time.perf_counter() - started
        print(f"  {group:9s} {Path(ref).stem:24s} {t['ms_median']:8.1f} ms  mIoU {miou:.4f}  ({seconds:.0f} s)")

    load = timed["load_average"]
    header = (
        f"1x3x{args.size}, {args.classes} classes, {args.threads} threads, eager, median of {args.rounds} interleaved "
        f"rounds (load {load['before'][0]:.2f} -> {load['after'][0]:.2f}); trained {args.iterations} iterations of "
        f"{args.batch_size} {args.crop}x{args.crop} crops, lr {args.lr}, seed {args.seed}; search budget {args.budget}"
    )
    random_front = front([r for r in rows if r["group"] == "random"])
    verdicts = [
        f"{r['name']}: {'on or above' if on_or_above(r, random_front) else 'below'} the random front"
        for r in rows
        if r["group"] == "searched"
    ]
    table = markdown(rows, header) + "\n" + "\n".join(f"- {v}" for v in verdicts) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(args.out / "pareto.csv", buffer.getvalue())
    atomic_write_text(args.out / "pareto.md", table)
    with atomic_path(args.out / "pareto.png") as tmp:
        tmp.write_bytes(plot(rows, header))
    print()
    print(table)
    print(f"wrote {args.out / 'pareto.png'}, pareto.csv, pareto.md")


if __name__ == "__main__":
    main()
