"""Latency in the search: the expected latency of the emitted network under the architecture weights,
its penalty in the architecture loss, and the emitted widths fitted to the target.

Both stages price the network stage 2 emits: the lattice at ``spec_channels`` with the kept paths,
each unit looked up in the device's table (``rspnet_zoo.perf.latency``). Node m keeps about k = topk of its
candidates; candidate c is kept with q_mc = min(1, k a_mc), a being its attention. A node is in the
emitted network if the head reads it or a kept path of a node in it comes from it: u_n = 1 for the
head's nodes, else 1 - prod_m (1 - u_m q_mn) over the nodes m that may read it. Then

    E[latency] = fixed (stems, head) + sum_n u_n (cell_n + fusion_n + sum_c q_nc path_nc).

Stage 2 learns the attention a and knows the cell. Stage 1 takes the attention uniform and prices the
cell: a decoded step keeps two edges, each with its strongest op other than 'none', so op p is expected
on count_p = sum_e 2 beta_e alpha_ep / (1 - alpha_e,none) edges of every cell, and cell_n holds
sum_p count_p latency(p at node n's width and size) beside the aggregations that do not depend on it.
The decoder keeps at most ``skip_cap`` skip-connects, so skip-connects past the cap are priced as the
other ops: priced as free, a cell of skips was the price's optimum at a tight target, yet the decoder
struck all but the cap and emitted whatever op came second on those edges.

The penalty is ``weight * max(0, E / T - 1) + price * log(E / T)`` for a target T, not FBNet's
multiplicative CE * a log(LAT)^b: a latency target is a constraint to meet. Above it the hinge's pull
grows with the relative excess, which has no unit, so one weight (``latency_weight``, a budget
setting) serves any target and device. Below it the hinge alone is zero, and the accuracy proxy of a
short search then drifts to cells of parameter-free ops: at a generous target stage 1 chose max and
average pools, a cell both slower (predicted, with the same paths and width) and less accurate than the
dilated convolutions it chose under a tighter one. So latency also has a small price (``latency_price``,
MnasNet's soft constraint in the loss's log form): its gradient is price / E per ms at every latency, the
same for any target; with it the generous search chose the dilated convolutions (docs/benchmarks.md has
both runs). FBNet's factor prices latency too, but scales with the cross-entropy and its exponent has to be
tuned per device.

Decoding is an argmax of weights the expectation only approximates, so the decoded network can still
land above the target: its widths are then narrowed to the widest ``latency_widths`` choice the table
predicts to meet it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rspnet_zoo.errors import SpecError, ZooError
from rspnet_zoo.perf.latency import LatencyTable, PlacedUnit, Profile, Unit, measure_model, plan_profile, plan_units
from rspnet_zoo.spec.models import Cell, CellStep, Edge, Genotype
from rspnet_zoo.spec.plan import lower
from searchers.rspnet.budgets import PathStage, Schedule, SearchConfig, SearchEncoder
from searchers.rspnet.decode import EDGES_PER_STEP, SKIP
from searchers.rspnet.structures import LatticeNode, head_candidates, lattice, path_network


def placeholder_cell(steps: int) -> Cell:
    """A decoded cell's shape (two edges per step) with no op chosen: what stage 1 prices its ops on."""
    return Cell(
        num_inputs=2,
        steps=[CellStep(edges=[Edge(input=0, op="none"), Edge(input=1, op="none")]) for _ in range(steps)],
        concat=list(range(2, 2 + steps)),
    )


class LatticeLatency:
    """The emitted network's expected latency as a function of the architecture weights (module docstring)."""

    def __init__(
        self,
        table: LatencyTable,
        cell: Cell,
        nodes: Sequence[LatticeNode],
        stage: PathStage,
        num_classes: int,
        primitives: Sequence[str] | None = None,
        encoder: SearchEncoder | None = None,
    ):
        """``primitives``: stage 1, the cell's ops are priced per primitive (``cell`` is a placeholder);
        ``encoder``: the lattice's (its cost is in the fixed part, as the stems' is)."""
        genotype = path_network(
            cell,
            nodes,
            stage.spec_channels,
            stage.rsp_ratio,
            stage.rsp_depths,
            num_classes,
            name="priced",
            encoder=encoder,
        )
        self.nodes = list(nodes)
        self.k = stage.topk or max(len(n.candidates) for n in nodes)
        self.primitives = [p for p in primitives or () if p != "none"]
        ids = ["input"] + [n.id for n in genotype.network.nodes]
        row = {n.id: r for r, n in enumerate(self.nodes)}
        placed = plan_units(lower(genotype), genotype, table.target.size)
        units: list[tuple[PlacedUnit, Unit]] = []
        op_units: dict[int, list[Unit]] = {}
        for p in placed:
            unit = p.unit
            if p.role == "fuse":  # the emitted node fuses the paths it keeps, not every candidate
                unit = Unit("fuse", (min(self.k, unit.args[0]), *unit.args[1:]))
            if p.role == "op" and self.primitives:
                if p.node not in op_units:
                    op_units[p.node] = [Unit("op", (name, *unit.args[1:])) for name in self.primitives]
                continue
            units.append((p, unit))
        table.ms([u for _, u in units] + [u for us in op_units.values() for u in us])
        width = max(len(n.candidates) for n in self.nodes)
        self.fixed = 0.0
        self.cell = torch.zeros(len(self.nodes), dtype=torch.float64)
        self.path = torch.zeros(len(self.nodes), width, dtype=torch.float64)
        self.ops = torch.zeros(len(self.nodes), len(self.primitives), dtype=torch.float64)
        for p, unit in units:
            r = row.get(ids[p.node + 1]) if p.node >= 0 else None
            ms = table.unit_ms(unit)
            if r is None:
                self.fixed += ms
            elif p.role == "path":
                self.path[r, self.nodes[r].candidates.index(ids[p.source])] += ms
            else:
                self.cell[r] += ms
        for node, us in op_units.items():
            self.ops[row[ids[node + 1]]] = torch.tensor([table.unit_ms(u) for u in us], dtype=torch.float64)
        self.row = row
        self.head = set(head_candidates(self.nodes))
        self.readers: list[list[tuple[int, int]]] = [[] for _ in self.nodes]
        for m, n in enumerate(self.nodes):
            for c, src in enumerate(n.candidates):
                if src in row:
                    self.readers[row[src]].append((m, c))

    def lower_bound(self, own: torch.Tensor) -> float:
        """The least ms of any network this lattice can emit when node n costs at least ``own[n]`` (its cell
        and fusion): every node the head reads is in it, and so is a chain of kept paths to it from the stem."""
        reach: list[float] = []  # the cheapest chain from the stem to node r, r included (nodes come in layer order)
        for r, n in enumerate(self.nodes):
            inflow = [
                float(self.path[r, c]) + (reach[self.row[s]] if s in self.row else 0.0)
                for c, s in enumerate(n.candidates)
            ]
            reach.append(float(own[r]) + min(inflow))
        head = [self.row[h] for h in self.head]
        alone = sum(
            float(own[r]) + min(float(self.path[r, c]) for c in range(len(self.nodes[r].candidates))) for r in head
        )
        return self.fixed + max(max(reach[r] for r in head), alone)

    def uniform(self) -> torch.Tensor:
        """Every candidate of a node equally likely (stage 1: the paths are not searched yet)."""
        a = torch.zeros_like(self.path)
        for r, n in enumerate(self.nodes):
            a[r, : len(n.candidates)] = 1.0 / len(n.candidates)
        return a

    def expected(self, attention: torch.Tensor, op_counts: torch.Tensor | None = None) -> torch.Tensor:
        """E[latency] in ms; ``attention`` (nodes x candidates), ``op_counts`` (stage 1: expected edges per op)."""
        q = (self.k * attention.double()).clamp(max=1.0)
        cost = self.cell + (q * self.path).sum(dim=1)
        if op_counts is not None:
            cost = cost + self.ops @ op_counts.double()
        used: list[torch.Tensor] = [torch.ones((), dtype=torch.float64)] * len(self.nodes)
        for n in range(len(self.nodes) - 1, -1, -1):
            if self.nodes[n].id not in self.head:
                missed = torch.ones((), dtype=torch.float64)
                for m, c in self.readers[n]:
                    missed = missed * (1 - used[m] * q[m, c])
                used[n] = 1 - missed
        return self.fixed + (torch.stack(used) * cost).sum()


def op_counts(
    alphas: torch.Tensor, betas: torch.Tensor, primitives: Sequence[str], skip_cap: int | None = None
) -> torch.Tensor:
    """Expected edges of the decoded cell per op other than 'none' (module docstring): each step keeps
    two edges, the edge weight beta (softmax over the step's edges) says which, and the op is the edge's
    strongest other than 'none'. The decoder keeps at most ``skip_cap`` skip-connects and gives a struck
    edge another op, so skip-connects past the cap are priced as the other ops, in their proportions:
    a cell of free skips the decoder cannot emit is never the price's optimum."""
    keep = [i for i, p in enumerate(primitives) if p != "none"]
    a = alphas[:, keep]
    a = a / a.sum(dim=1, keepdim=True)
    counts = (EDGES_PER_STEP * betas[:, None] * a).sum(dim=0)
    names = [primitives[i] for i in keep]
    if skip_cap is None or SKIP not in names or len(names) == 1:
        return counts
    skip = torch.zeros_like(counts)
    skip[names.index(SKIP)] = 1.0
    others = counts * (1 - skip)
    excess = torch.relu(counts @ skip - skip_cap)
    return torch.minimum(counts, torch.full_like(counts, float(skip_cap))) * skip + others * (
        1 + excess / others.sum().clamp(min=1e-12)
    )


def cheapest_cell_ms(ops_ms: torch.Tensor, primitives: Sequence[str], edges: int, skip_cap: int | None) -> torch.Tensor:
    """Per node, the least ms of ``edges`` op instances the decoder can emit (``ops_ms``: nodes x
    ``primitives``, 'none' left out): every edge at the node's cheapest op, except that at most ``skip_cap``
    of them may be skip-connects."""
    if skip_cap is None or SKIP not in primitives or len(primitives) == 1 or skip_cap >= edges:
        return ops_ms.min(dim=1).values * edges
    s = list(primitives).index(SKIP)
    other = torch.cat([ops_ms[:, :s], ops_ms[:, s + 1 :]], dim=1).min(dim=1).values
    return torch.minimum(ops_ms[:, s], other) * skip_cap + other * (edges - skip_cap)


@dataclass
class LatencyPenalty:
    """One stage's architecture-loss term: ``weight * max(0, E / T - 1) + price * log(E / T)``; ``last_ms``
    for the log."""

    expected: Callable[[], torch.Tensor]
    target_ms: float
    weight: float
    price: float = 0.0
    last_ms: float | None = None

    def __call__(self) -> torch.Tensor:
        e = self.expected()
        self.last_ms = round(float(e.detach()), 4)
        ratio = e / self.target_ms
        return (self.weight * torch.relu(ratio - 1) + self.price * torch.log(ratio)).float()


def fit_widths(
    build: Callable[[int], Genotype], stage: PathStage, table: LatencyTable, target_ms: float
) -> tuple[Genotype, int, float, list[tuple[int, float]]]:
    """The decoded network at the widest ``latency_widths`` choice predicted to meet ``target_ms`` (else the
    fastest); returns it, its spec channels, its predicted ms and every (channels, ms) tried."""
    tried: list[tuple[int, float, Genotype]] = []
    widths = _widths(stage)
    for channels in widths:
        genotype = build(channels)
        try:
            ms = table.predict(genotype)
        except SpecError:  # too narrow for the RSP split
            continue
        tried.append((channels, ms, genotype))
        if ms <= target_ms:
            break
    if not tried:
        raise SpecError("", f"no width of {widths} gives a valid network")
    best = next((t for t in tried if t[1] <= target_ms), min(tried, key=lambda t: t[1]))
    return best[2], best[0], best[1], [(c, round(ms, 3)) for c, ms, _ in tried]


@dataclass(frozen=True)
class LatencyGoal:
    """A search's latency target and the device table it is priced with."""

    table: LatencyTable
    target_ms: float

    def cell_penalty(self, config: SearchConfig, num_classes: int, model) -> LatencyPenalty:
        """Stage 1: ``model`` is the CellSupernet; its op weights price the cell, the paths are uniform."""
        cost = LatticeLatency(
            self.table,
            placeholder_cell(config.cell.steps),
            config_lattice(config),
            config.path,
            num_classes,
            model.primitives,
            config.encoder,
        )
        uniform = cost.uniform()

        def expected() -> torch.Tensor:
            return cost.expected(uniform, op_counts(*model.edge_weights(), model.primitives, config.cell.skip_cap))

        return self._penalty(expected, config.cell)

    def path_penalty(self, config: SearchConfig, cell: Cell, num_classes: int, model) -> LatencyPenalty:
        """Stage 2: ``model`` is the PathSupernet; its attention prices the paths and the cells they keep."""
        cost = LatticeLatency(self.table, cell, model.lattice, config.path, num_classes, encoder=config.encoder)
        return self._penalty(lambda: cost.expected(model.attention()), config.path)

    def _penalty(self, expected: Callable[[], torch.Tensor], stage: Schedule) -> LatencyPenalty:
        return LatencyPenalty(expected, self.target_ms, stage.latency_weight, stage.latency_price)


def _cell_of(steps: int, ops: Sequence[str]) -> Cell:
    """The decoded cell's shape with edge j of the cell running ``ops[j % len(ops)]``."""
    cell = placeholder_cell(steps)
    edges = iter(range(2 * steps))
    return cell.model_copy(
        update=dict(
            steps=[
                s.model_copy(
                    update=dict(edges=[e.model_copy(update=dict(op=ops[next(edges) % len(ops)])) for e in s.edges])
                )
                for s in cell.steps
            ]
        )
    )


def config_lattice(config: SearchConfig) -> list[LatticeNode]:
    """The stage-2 lattice of ``config``: its path stage's grid over its stem or encoder."""
    stage = config.path
    return lattice(stage.layers, stage.two_back, stage.stem_reduction, stage.finest_layers, config.encoder)


def _full_lattice(config: SearchConfig, cell: Cell, num_classes: int, channels: int, name: str) -> Genotype:
    stage = config.path
    return path_network(
        cell,
        config_lattice(config),
        channels,
        stage.rsp_ratio,
        stage.rsp_depths,
        num_classes,
        name=name,
        encoder=config.encoder,
    )


def _widths(stage: PathStage) -> list[int]:
    return sorted({max(1, round(stage.spec_channels * m)) for m in stage.latency_widths}, reverse=True)


def space_genotypes(config: SearchConfig, num_classes: int) -> list[Genotype]:
    """Networks that hold every unit the search can emit: the full lattice at every width a target may
    narrow it to, its cells made of one primitive each (a normal cell's edges of a node all share a width
    and a size, so any decoded cell is made of these units)."""
    return [
        _full_lattice(config, _cell_of(config.cell.steps, [p]), num_classes, c, f"space_{p}_f{c}")
        for p in config.cell.primitives
        for c in _widths(config.path)
    ]


def calibration_genotypes(config: SearchConfig, num_classes: int) -> list[Genotype]:
    """The networks a table is calibrated on (``LatencyTable.calibrate``): the full lattice at every width
    a target may narrow it to, the cell's edges running the primitives in turn. Every width, not the
    widest and narrowest alone: the per-unit overhead grows with the width, and the emitted networks
    spread over all of them."""
    ops = [p for p in config.cell.primitives if p != "none"]
    cell = _cell_of(config.cell.steps, ops)
    return [_full_lattice(config, cell, num_classes, c, f"calibration_f{c}") for c in _widths(config.path)]


def latency_target(size: tuple[int, int]):
    """Where a search run in this process is priced: eager on the CPU at torch's thread count."""
    from rspnet_zoo.perf.latency import Target

    return Target("cpu", "eager", torch.get_num_threads(), tuple(size))


def plan_space_profile(size: tuple[int, int], config: SearchConfig, num_classes: int, command: str = "") -> Profile:
    """The latency profile of the search space (every unit it can emit, the calibration networks) on this
    process's target: what of it the cached table lacks, before any of it is measured."""
    return plan_profile(
        latency_target(size),
        space_genotypes(config, num_classes),
        command,
        calibrate_on=calibration_genotypes(config, num_classes),
    )


def open_goal(
    target_ms: float, size: tuple[int, int], config: SearchConfig, num_classes: int, command: str = ""
) -> LatencyGoal:
    """The goal of a search run in this process: the table of the search space, profiled and calibrated
    unless this device's cached one already is."""
    if target_ms <= 0:
        raise ZooError(f"--latency-target must be positive milliseconds, not {target_ms}")
    table, _ = plan_space_profile(size, config, num_classes, command).run()
    return LatencyGoal(table, target_ms)


def fastest_ms(table: LatencyTable, config: SearchConfig, num_classes: int, cell: Cell | None = None) -> float:
    """A lower bound of the predicted latency of every network the path search can emit (``cell``: the
    searched cell, when it is known; else each node's cell at its cheapest ops the decoder can emit): at each width a
    target may narrow to, the fixed part plus the cheapest chain of cells and paths from the stem to each
    node the head reads, and at least each of those nodes' own cost. A target below it cannot be met."""
    best = float("inf")
    for channels in _widths(config.path):
        stage = config.path.model_copy(update=dict(spec_channels=channels))
        nodes = config_lattice(config)
        try:
            if cell is None:
                cost = LatticeLatency(
                    table,
                    placeholder_cell(config.cell.steps),
                    nodes,
                    stage,
                    num_classes,
                    config.cell.primitives,
                    config.encoder,
                )
                edges = EDGES_PER_STEP * config.cell.steps
                own = cost.cell + cheapest_cell_ms(cost.ops, cost.primitives, edges, config.cell.skip_cap)
            else:
                cost = LatticeLatency(table, cell, nodes, stage, num_classes, encoder=config.encoder)
                own = cost.cell
        except SpecError:  # too narrow for the RSP split
            continue
        best = min(best, cost.lower_bound(own))
    return best


def meet_target(goal: LatencyGoal, build: Callable[[int], Genotype], stage: PathStage | None) -> tuple[Genotype, dict]:
    """The emitted network: narrowed to the target if ``stage`` offers widths (``fit_widths``), then
    predicted and measured; its provenance notes say both. Returns it and the report."""
    if stage is None:
        genotype = build(0)
        predicted, tried = goal.table.predict(genotype), []
    else:
        genotype, _, predicted, tried = fit_widths(build, stage, goal.table, goal.target_ms)
    if goal.table.path is None:
        goal.table.save()
    report = latency_report(genotype, goal.table, goal.target_ms, predicted)
    report["widths_tried"] = tried
    notes = "; ".join(filter(None, [genotype.provenance.notes, latency_note(report)]))
    return genotype.model_copy(update=dict(provenance=genotype.provenance.model_copy(update=dict(notes=notes)))), report


def latency_report(genotype: Genotype, table: LatencyTable, target_ms: float, predicted_ms: float) -> dict:
    """Predicted and measured latency of the emitted network, and whether it meets the target."""
    from rspnet_zoo.nn.model import GenotypeNet

    measured = measure_model(GenotypeNet(genotype, pretrained_encoders=False), table.target)
    t = table.target
    return dict(
        target_ms=target_ms,
        predicted_ms=round(predicted_ms, 3),
        measured_ms=round(measured, 3),
        meets=measured <= target_ms,
        miss_ms=round(max(0.0, measured - target_ms), 3),
        size=list(t.size),
        device=t.device,
        runtime=t.runtime,
        threads=t.threads,
        fingerprint=table.fingerprint_id,
        table=str(table.path) if table.path else None,
    )


def latency_verdict(report: dict) -> str:
    """One line for people: both figures and whether the measured one meets the target."""
    h, w = report["size"]
    measured, target = report["measured_ms"], report["target_ms"]
    verdict = (
        f"meets the {target} ms target"
        if report["meets"]
        else f"misses the {target} ms target by {measured - target:.2f} ms ({100 * (measured / target - 1):.0f}%)"
    )
    return f"latency at 1x3x{h}x{w}: predicted {report['predicted_ms']:.2f} ms, measured {measured:.2f} ms: {verdict}"


def latency_note(report: dict) -> str:
    """The provenance line: target, table and both figures."""
    h, w = report["size"]
    verdict = "meets it" if report["meets"] else f"misses it by {report['miss_ms']:.2f} ms"
    return (
        f"latency target {report['target_ms']} ms at 1x3x{h}x{w} ({report['device']}, {report['runtime']}, "
        f"{report['threads']} threads; table {report['fingerprint']}): predicted {report['predicted_ms']:.2f} ms, "
        f"measured {report['measured_ms']:.2f} ms, {verdict}"
    )
