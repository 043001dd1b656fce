"""Random search over the two-stage search's space: the baseline a search has to beat at equal compute
(Li and Talwalkar, "Random Search and Reproducibility for Neural Architecture Search", 2019).

A sample is a network the search could emit: a random cell with the decoded cell's shape (two edges a step,
ops other than 'none', at most ``skip_cap`` skip-connects, as the decoder's cap leaves), random attention
decoded by the path search's own rule, and under a latency goal the widest width predicted to meet the
target (the search's own ``fit_widths``; without a goal, a random width of ``latency_widths``). Each
sample trains ``proxy_steps`` steps on the weights half of the search data and is scored by its mIoU on
the held-apart half, the split the search's architecture step sees; the best score wins.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.spec.models import Cell, CellStep, Edge, Genotype
from rspnet_zoo.training.loop import evaluate, train
from searchers.rspnet.budgets import SearchConfig
from searchers.rspnet.decode import EDGES_PER_STEP, SKIP, decode_paths
from searchers.rspnet.latency_search import LatencyGoal, fit_widths
from searchers.rspnet.structures import STEM, head_candidates, lattice, path_network


def random_cell(primitives: tuple[str, ...], steps: int, skip_cap: int, rng: random.Random) -> Cell:
    """A cell the decoder could emit: each step reads two distinct earlier states, each edge a random op
    other than 'none'; skip-connects over ``skip_cap`` are redrawn among the other ops."""
    ops = [p for p in primitives if p != "none"]
    others = [p for p in ops if p != SKIP]
    edges = [
        [Edge(input=j, op=rng.choice(ops)) for j in sorted(rng.sample(range(2 + i), EDGES_PER_STEP))]
        for i in range(steps)
    ]
    skips = [(s, k) for s, step in enumerate(edges) for k, e in enumerate(step) if e.op == SKIP]
    if others:
        for s, k in rng.sample(skips, max(0, len(skips) - skip_cap)):
            edges[s][k] = Edge(input=edges[s][k].input, op=rng.choice(others))
    return Cell(num_inputs=2, steps=[CellStep(edges=e) for e in edges], concat=list(range(2, 2 + steps)))


def random_network(
    config: SearchConfig, rng: random.Random, num_classes: int, name: str, goal: LatencyGoal | None = None
) -> Genotype:
    """One sample of the space (module docstring); under ``goal`` narrowed as the search narrows its result."""
    stage = config.path
    cell = random_cell(config.cell.primitives, config.cell.steps, config.cell.skip_cap, rng)
    nodes = lattice(stage.layers, stage.two_back, stage.stem_reduction, stage.finest_layers)
    attention = {n.id: [rng.random() for _ in n.candidates] for n in nodes}
    decision = decode_paths(
        {n.id: n.candidates for n in nodes}, attention, head_candidates(nodes), stage.topk, stage.threshold, (STEM,)
    )

    def build(channels: int) -> Genotype:
        return path_network(
            cell, nodes, channels, stage.rsp_ratio, stage.rsp_depths, num_classes, kept=decision.kept, name=name
        )

    if goal is None:
        return build(max(1, round(stage.spec_channels * rng.choice(stage.latency_widths))))
    return fit_widths(build, stage, goal.table, goal.target_ms)[0]


@dataclass(frozen=True)
class ProxyTraining:
    """How each sample is trained and scored: ``steps`` SGD steps (poly lr from ``lr``) of ``batch_size``."""

    steps: int
    batch_size: int
    lr: float = 0.05


def proxy_miou(genotype: Genotype, weights_half, held_out_half, proxy: ProxyTraining, seed: int) -> float:
    """mIoU on ``held_out_half`` after ``proxy.steps`` steps on ``weights_half``, from seed ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GenotypeNet(genotype)
        train(
            model,
            weights_half,
            iterations=proxy.steps,
            batch_size=proxy.batch_size,
            lr=proxy.lr,
            seed=seed,
            device=torch.device("cpu"),
        )
        return evaluate(model, held_out_half, batch_size=proxy.batch_size, device=torch.device("cpu"))["miou"]


@dataclass
class RandomSearchResult:
    best: Genotype
    best_miou: float
    scores: list[float] = field(default_factory=list)  # every sample's proxy mIoU, in order
    cpu_s: float = 0.0


def random_search(
    config: SearchConfig,
    num_classes: int,
    weights_half,
    held_out_half,
    proxy: ProxyTraining,
    seed: int,
    cpu_budget_s: float,
    goal: LatencyGoal | None = None,
    name: str = "random_search",
    on_sample: Callable[[int, Genotype, float], None] | None = None,
) -> RandomSearchResult:
    """Sample, proxy-train and score networks until the next one would pass ``cpu_budget_s`` of this
    process's CPU time (at least one); the best on the held-out half wins (ties: the earlier)."""
    rng = random.Random(seed)
    started = time.process_time()
    result: RandomSearchResult | None = None
    while True:
        index = len(result.scores) if result else 0
        genotype = random_network(config, rng, num_classes, f"{name}_{index}", goal)
        miou = proxy_miou(genotype, weights_half, held_out_half, proxy, seed * 1000 + index)
        if result is None:
            result = RandomSearchResult(genotype, miou)
        elif miou > result.best_miou:
            result.best, result.best_miou = genotype, miou
        result.scores.append(miou)
        result.cpu_s = time.process_time() - started
        if on_sample is not None:
            on_sample(index, genotype, miou)
        if result.cpu_s * (len(result.scores) + 1) / len(result.scores) > cpu_budget_s:
            break
    result.best = result.best.model_copy(update=dict(name=name))
    return result
