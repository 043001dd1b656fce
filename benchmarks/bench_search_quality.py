"""Search quality on the synthetic benchmark: the spec a ``small`` search emitted against random specs
of the same search space and a similar parameter count, all trained with one short schedule.

A random spec is what the search's own decoder makes of random architecture weights: random alphas
and edge weights through the same DARTS rule and skip cap, random path attentions through the same
top-k / threshold rule on the same lattice. Candidates outside +-tolerance of the searched spec's
parameter count are redrawn. Every network is trained from scratch with ``rspnet_zoo.training.loop.train``
(same iterations, batch, crop, learning rate and seed) and scored with ``evaluate`` on the held-out
val split; the script prints every mIoU, the random median, and whether the searched spec beats it.

    python benchmarks/bench_search_quality.py [--spec genotypes/rspnet_searched.json] [--random 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rspnet_zoo import GenotypeNet, load_spec
from rspnet_zoo.data import build_dataset
from rspnet_zoo.nn.ops import DARTS_PRIMITIVES
from rspnet_zoo.spec.models import Genotype
from rspnet_zoo.training.loop import evaluate, train
from rspnet_zoo.zoo.stats import count_parameters, meta_model
from searchers.rspnet.budgets import SearchConfig, resolve_config
from searchers.rspnet.decode import decode_cell, decode_paths
from searchers.rspnet.structures import STEM, dense_edge_count, lattice, path_network
from searchers.rspnet.supernet import edge_groups

REPO = Path(__file__).resolve().parents[1]


def random_spec(cfg: SearchConfig, num_classes: int, class_names, g: torch.Generator, name: str) -> Genotype:
    steps, edges = cfg.cell.steps, dense_edge_count(cfg.cell.steps)
    alphas = F.softmax(torch.randn(edges, len(DARTS_PRIMITIVES), generator=g), dim=-1)
    raw = torch.randn(edges, generator=g)
    betas = torch.cat([F.softmax(raw[s], dim=0) for s in edge_groups(steps)])
    cell = decode_cell(alphas * betas[:, None], DARTS_PRIMITIVES, steps, cfg.cell.skip_cap).cell
    nodes = lattice(cfg.path.layers, cfg.path.two_back)
    attention = {n.id: F.softmax(torch.randn(len(n.candidates), generator=g), dim=0).tolist() for n in nodes}
    last = max(n.layer for n in nodes)
    paths = decode_paths(
        {n.id: n.candidates for n in nodes},
        attention,
        [n.id for n in nodes if n.layer == last],
        cfg.path.topk,
        cfg.path.threshold,
        roots=(STEM,),
    )
    return path_network(
        cell,
        nodes,
        cfg.path.spec_channels,
        cfg.path.rsp_ratio,
        cfg.path.rsp_depths,
        num_classes,
        kept=paths.kept,
        name=name,
        class_names=class_names,
    )


def parameters(genotype: Genotype) -> int:
    return count_parameters(meta_model(genotype))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=REPO / "genotypes" / "rspnet_searched.json")
    parser.add_argument("--budget", default=None, help="search space settings [default: the spec's provenance budget]")
    parser.add_argument("--random", type=int, default=5, help="random specs to train")
    parser.add_argument("--tolerance", type=float, default=0.25, help="relative parameter-count window")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    searched = load_spec(args.spec)
    budget = args.budget or searched.provenance.budget or "small"
    cfg = resolve_config(budget)
    size = (args.crop, args.crop)
    train_set = build_dataset("synthetic", "train", crop=size, train=True)
    val_set = build_dataset("synthetic", "val", size=size)
    target = parameters(searched)

    g = torch.Generator().manual_seed(args.seed)
    candidates, tries = [], 0
    while len(candidates) < args.random:
        tries += 1
        spec = random_spec(cfg, train_set.num_classes, train_set.class_names, g, f"random_{len(candidates)}")
        if abs(parameters(spec) / target - 1) <= args.tolerance:
            candidates.append(spec)
        if tries > 500:
            raise SystemExit(
                f"found only {len(candidates)} random specs within {args.tolerance:.0%} of {target:,} parameters"
            )
    print(
        f"search space of budget '{budget}'; searched spec {searched.name} ({target:,} parameters); "
        f"{args.random} random specs within {args.tolerance:.0%} ({tries} drawn)"
    )
    print(
        f"schedule: {args.iterations} iterations, batch {args.batch_size}, {args.crop}x{args.crop} crops, "
        f"SGD lr {args.lr} poly, seed {args.seed}; val: {len(val_set)} synthetic images"
    )

    results = {}
    for spec in [searched, *candidates]:
        torch.manual_seed(args.seed)
        model = GenotypeNet(spec, num_classes=train_set.num_classes)
        started = time.perf_counter()
        train(
            model,
            train_set,
            iterations=args.iterations,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            device=torch.device("cpu"),
        )
        miou = evaluate(model, val_set, batch_size=16, device=torch.device("cpu"))["miou"]
        results[spec.name] = miou
        cell = " | ".join(" + ".join(f"{e.op}({e.input})" for e in s.edges) for s in spec.cells["normal"].steps)
        print(
            f"  {spec.name:18s} {parameters(spec):>9,} params  mIoU {miou:.4f}  "
            f"({time.perf_counter() - started:.0f} s)  cell: {cell}"
        )
    random_mious = [results[c.name] for c in candidates]
    median = statistics.median(random_mious)
    verdict = "beats" if results[searched.name] > median else "does not beat"
    print(f"random mIoUs: {', '.join(f'{m:.4f}' for m in random_mious)}; median {median:.4f}")
    print(f"searched {results[searched.name]:.4f} {verdict} the random median ({results[searched.name] - median:+.4f})")


if __name__ == "__main__":
    main()
