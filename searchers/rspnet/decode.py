"""Decoding: architecture weights become discrete choices. Pure functions of the weights.

Cell (DARTS): for each step keep the two incoming edges whose strongest non-'none' op weighs most,
each with that op. Ties go to the earlier input and the earlier primitive, so decoding is a function
of the weights alone. Skip-connect collapse is guarded as in P-DARTS: while the cell holds more
skip-connects than the cap, the weakest one is struck from its edge and the cell decoded again
(ties: the earlier step).

Paths: each node keeps the candidates whose attention reaches the threshold and/or its top-k; a node
left with no path, or whose paths all come from dropped nodes, is dropped; then every node that no
longer reaches the head is pruned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from rspnet_zoo.errors import ZooError
from rspnet_zoo.spec.models import Cell, CellStep, Edge
from searchers.rspnet.structures import dense_edge_count, dense_edge_rows

SKIP = "skip_connect"
EDGES_PER_STEP = 2


@dataclass(frozen=True)
class CellDecision:
    cell: Cell
    skips_before_cap: int  # skip-connects the plain argmax decoding chose
    skips: int  # skip-connects in the decoded cell
    struck: tuple[tuple[int, int], ...]  # (step, input) edges whose skip-connect the cap removed


def _argmax_cell(
    weights: torch.Tensor, primitives: Sequence[str], steps: int, num_inputs: int
) -> list[list[tuple[int, int, str, float]]]:
    """[(edge row, input, op, weight)] per step, the plain DARTS rule on masked weights."""
    decoded = []
    for rows in dense_edge_rows(steps, num_inputs):
        best = []
        for j, row in enumerate(rows):
            w = weights[row]
            k = max(range(len(primitives)), key=lambda i: (w[i].item(), -i))  # first of equal maxima
            best.append((row, j, primitives[k], w[k].item()))
        best.sort(key=lambda e: (-e[3], e[1]))  # strongest first, ties to the earlier input
        decoded.append(sorted(best[:EDGES_PER_STEP], key=lambda e: e[1]))
    return decoded


def decode_cell(
    weights: torch.Tensor,
    primitives: Sequence[str],
    steps: int,
    skip_cap: int | None = None,
    num_inputs: int = 2,
) -> CellDecision:
    """``weights``: edges x primitives (softmax(alpha), times the edge weight with edge normalisation)."""
    expected = dense_edge_count(steps, num_inputs)
    if weights.shape != (expected, len(primitives)):
        raise ValueError(
            f"weights of shape {tuple(weights.shape)}; "
            f"{steps} steps over {len(primitives)} primitives need {(expected, len(primitives))}"
        )
    masked = weights.detach().clone().double()
    if "none" in primitives:
        masked[:, primitives.index("none")] = float("-inf")
    decoded = _argmax_cell(masked, primitives, steps, num_inputs)
    skips_before = sum(op == SKIP for step in decoded for _, _, op, _ in step)
    struck = []
    while skip_cap is not None and sum(op == SKIP for step in decoded for _, _, op, _ in step) > skip_cap:
        s, (row, j, _, _) = min(
            ((s, e) for s, step in enumerate(decoded) for e in step if e[2] == SKIP),
            key=lambda t: (t[1][3], t[0], t[1][1]),
        )
        masked[row, primitives.index(SKIP)] = float("-inf")
        struck.append((s, j))
        decoded = _argmax_cell(masked, primitives, steps, num_inputs)
    cell = Cell(
        num_inputs=num_inputs,
        steps=[CellStep(edges=[Edge(input=j, op=op) for _, j, op, _ in step]) for step in decoded],
        concat=list(range(num_inputs, num_inputs + steps)),
    )
    skips = sum(op == SKIP for step in decoded for _, _, op, _ in step)
    return CellDecision(cell, skips_before, skips, tuple(struck))


@dataclass(frozen=True)
class PathDecision:
    kept: dict[str, list[tuple[str, float]]]  # node -> [(source, attention)], surviving nodes only
    dropped: tuple[str, ...] = field(default=())  # nodes with no path left
    pruned: tuple[str, ...] = field(default=())  # nodes that no longer reach the head


def keep_paths(attention: Sequence[float], topk: int | None, threshold: float | None) -> list[int]:
    """Indices of the kept candidates, strongest first (ties to the earlier candidate)."""
    order = sorted(range(len(attention)), key=lambda i: (-attention[i], i))
    if threshold is not None:
        order = [i for i in order if attention[i] >= threshold]
    return order if topk is None else order[:topk]


def decode_paths(
    candidates: Mapping[str, Sequence[str]],
    attention: Mapping[str, Sequence[float]],
    head: Sequence[str],
    topk: int | None,
    threshold: float | None,
    roots: Sequence[str] = ("stem1",),
) -> PathDecision:
    """``candidates`` and ``attention`` per node in topological order; ``head`` the nodes the head may
    read; ``roots`` the nodes that always exist (the stem)."""
    alive = set(roots)
    kept: dict[str, list[tuple[str, float]]] = {}
    dropped = []
    for node, sources in candidates.items():
        weights = attention[node]
        paths = [(sources[i], float(weights[i])) for i in keep_paths(weights, topk, threshold) if sources[i] in alive]
        if paths:
            kept[node] = paths
            alive.add(node)
        else:
            dropped.append(node)
    reach = {n for n in head if n in kept}
    if not reach:
        raise ZooError(
            f"the path decoding keeps no node the head can read (topk={topk}, threshold={threshold}): "
            f"lower the threshold"
        )
    for node in reversed(list(kept)):
        if node in reach:
            reach.update(src for src, _ in kept[node])
    pruned = [n for n in kept if n not in reach]
    return PathDecision({n: p for n, p in kept.items() if n in reach}, tuple(dropped), tuple(pruned))
