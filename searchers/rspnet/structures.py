"""The outer structures the searches train on, written as genotype specs.

Both supernets are built from a spec, so what a search trains is what the compiler builds: stage 1
lowers a proxy chain of cells over the resolution levels (DARTS' CIFAR network turned into a
segmentation net), stage 2 a lattice of L layers x 4 levels with every candidate path. Emitting a
searched spec is then one more call with the decoded choices filled in.

Below the cells is either a stem of convs (to the first level) or a timm encoder (``SearchEncoder``): its
feature levels are then encoder nodes, the first in the spec, and the lattice's layer 0 holds one at every
level the encoder gives, so the cells and paths searched are a decoder over the encoder's levels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rspnet_zoo.spec.models import (
    Cell,
    CellStep,
    Defaults,
    Edge,
    Encoder,
    FusionHead,
    Genotype,
    InputSlot,
    LayerArgs,
    Network,
    Node,
    Partial,
    Path,
    Provenance,
)
from searchers.rspnet.budgets import NUM_LEVELS, SearchEncoder

CELL = "normal"
STEM = "stem1"
ENCODER = "backbone"  # the emitted spec's name of a searched decoder's encoder
HEAD_CHANNELS = 64  # the fusion head of emitted networks


def dense_edge_rows(steps: int, num_inputs: int = 2) -> list[range]:
    """The dense cell's edge list, step by step: step i reads every earlier state, so it owns the next
    ``num_inputs + i`` rows (edge j of a step reads state j). Every edge-indexed tensor follows it."""
    rows, offset = [], 0
    for i in range(steps):
        rows.append(range(offset, offset + num_inputs + i))
        offset += num_inputs + i
    return rows


def dense_edge_count(steps: int, num_inputs: int = 2) -> int:
    return sum(len(r) for r in dense_edge_rows(steps, num_inputs))


def dense_cell(steps: int, num_inputs: int = 2) -> Cell:
    """The search space's DAG: every step reads every earlier state. The ops are placeholders; the
    supernet puts a mixed op on each edge."""
    return Cell(
        num_inputs=num_inputs,
        steps=[CellStep(edges=[Edge(input=j, op="none") for j in range(len(r))]) for r in dense_edge_rows(steps)],
        concat=list(range(num_inputs, num_inputs + steps)),
    )


def _stems(channels: int, stem_reduction: int) -> list[Node]:
    """Convs from the image down to the first level: one per halving, the last one 2C wide."""
    stems, source, reduction = [], "input", 1
    count = max(1, stem_reduction.bit_length() - 1)
    names = [f"stem0_{i}" for i in range(count - 2)] + ["stem0", STEM][-count:]  # the last one is STEM
    for i, node_id in enumerate(names):
        reduction = min(2 * reduction, stem_reduction)
        width = 2 * channels if i == count - 1 else channels
        stems.append(
            Node(
                id=node_id,
                layer="conv",
                reduction=reduction,
                channels=width,
                inputs=[InputSlot(paths=[Path(node=source)])],
                args=LayerArgs(),
            )
        )
        source = node_id
    return stems


def encoder_node_id(reduction: int) -> str:
    return f"enc_r{reduction}"


def encoder_nodes(encoder: SearchEncoder) -> list[Node]:
    """One node per feature level of the encoder, finest first: they read the image, as every encoder node does."""
    return [
        Node(
            id=encoder_node_id(lvl.reduction),
            encoder=ENCODER,
            level=lvl.level,
            reduction=lvl.reduction,
            channels=lvl.channels,
            inputs=[InputSlot(paths=[Path(node="input")])],
        )
        for lvl in encoder.levels
    ]


def _encoders(encoder: SearchEncoder | None) -> dict[str, Encoder]:
    return {} if encoder is None else {ENCODER: Encoder(model=encoder.model)}


def _defaults(num_classes: int, class_names: Sequence[str] | None) -> Defaults:
    names = list(class_names) if class_names and len(class_names) == num_classes else None
    return Defaults(num_classes=num_classes, class_names=names)


def proxy_chain(
    cell: Cell,
    layers: int,
    levels: int,
    channels: int,
    stem_reduction: int,
    head_channels: int,
    num_classes: int,
    name: str = "proxy",
    provenance: Provenance | None = None,
    class_names: Sequence[str] | None = None,
    encoder: SearchEncoder | None = None,
) -> Genotype:
    """``layers`` cells over ``levels`` levels, going down a level at cells ``k * layers // levels`` (DARTS'
    rule: with 3 levels, 8 cells step down at cells 2 and 5); C doubles per level. Cell i reads cells
    i-2 and i-1 (the stem before them), a coarser level by factorized reduction, as DARTS does.
    The fusion head reads the last cell of every level. With an ``encoder``, its finest level is the
    stem (the chain starts at its reduction)."""
    if encoder is None:
        nodes, base = _stems(channels, stem_reduction), STEM
    else:
        nodes = encoder_nodes(encoder)[:1]
        base, stem_reduction = nodes[0].id, nodes[0].reduction
    ids, last_at, reduction_of = [], {}, {base: stem_reduction}
    for i in range(layers):
        level = sum(i >= k * layers // levels for k in range(1, levels))
        reduction = stem_reduction * 2**level
        node_id = f"c{i}_r{reduction}"
        sources = [ids[i - 2] if i >= 2 else base, ids[i - 1] if i >= 1 else base]
        finest = min(reduction_of[s] for s in sources)
        nodes.append(
            Node(
                id=node_id,
                cell=CELL,
                reduction=reduction,
                channels=channels * 2**level,
                inputs=[InputSlot(paths=[Path(node=s)]) for s in sources],
                downsample="factorized" if finest * 2 >= reduction else "bilinear",
            )
        )
        ids.append(node_id)
        reduction_of[node_id] = reduction
        last_at[level] = node_id
    return Genotype(
        format_version=1,
        name=name,
        cells={CELL: cell},
        encoders=_encoders(encoder),
        network=Network(nodes=nodes),
        head=FusionHead(type="fusion", inputs=list(last_at.values()), channels=head_channels),
        defaults=_defaults(num_classes, class_names),
        provenance=provenance or Provenance(),
    )


@dataclass(frozen=True)
class LatticeNode:
    """Node (layer, level) of the path-search grid and the nodes it may read."""

    id: str
    layer: int
    level: int
    previous: tuple[str, ...]  # layer - 1, levels level-1 .. level+1
    two_back: tuple[str, ...]  # layer - 2, the same levels (empty unless offered)

    @property
    def candidates(self) -> tuple[str, ...]:
        return self.previous + self.two_back


def lattice_id(layer: int, level: int) -> str:
    return STEM if layer == 0 else f"l{layer}_r{4 * 2**level}"


def lattice(
    layers: int,
    two_back: bool,
    stem_reduction: int = 4,
    finest_layers: int | None = None,
    encoder: SearchEncoder | None = None,
) -> list[LatticeNode]:
    """Layer 0 is the stem at 1/``stem_reduction`` (4 or 8: the first level); layer l has nodes from the
    first level down to l levels below it, at most 1/32 (each layer may go one level deeper, as in
    Auto-DeepLab). With ``finest_layers`` only the first that many layers have a node at the first level.
    With an ``encoder``, layer 0 is its feature levels from 1/``stem_reduction`` down and every layer has a
    node at each of them."""
    if encoder is None:
        base = {stem_reduction.bit_length() - 3: STEM}  # 4 -> level 0, 8 -> level 1
        deepest = NUM_LEVELS - 1
    else:
        levels = [lvl.reduction for lvl in encoder.levels if lvl.reduction >= stem_reduction]
        base = {r.bit_length() - 3: encoder_node_id(r) for r in levels}
        deepest = max(base)
    first = min(base)

    def present(layer: int, level: int) -> bool:
        if layer < 0 or not first <= level <= deepest:
            return False
        if layer == 0:
            return level in base
        if encoder is None and level > layer + first:
            return False
        return level > first or finest_layers is None or layer <= finest_layers

    def node_id(layer: int, level: int) -> str:
        return base[level] if layer == 0 else lattice_id(layer, level)

    def around(layer: int, level: int) -> tuple[str, ...]:
        return tuple(node_id(layer, s) for s in (level - 1, level, level + 1) if present(layer, s))

    return [
        LatticeNode(node_id(layer, s), layer, s, around(layer - 1, s), around(layer - 2, s) if two_back else ())
        for layer in range(1, layers + 1)
        for s in range(first, deepest + 1)
        if present(layer, s)
    ]


def lattice_roots(nodes: Sequence[LatticeNode]) -> tuple[str, ...]:
    """The nodes under the lattice that its first layer reads: the stem, or the encoder's levels."""
    ids = {n.id for n in nodes}
    return tuple(sorted({c for n in nodes for c in n.candidates if c not in ids}))


def head_candidates(nodes: Sequence[LatticeNode]) -> list[str]:
    """The nodes the fusion head may read, finest level first: the last node of every level (the
    last layer's, unless ``finest_layers`` ended a level earlier)."""
    last: dict[int, LatticeNode] = {}
    for n in nodes:
        if n.level not in last or n.layer > last[n.level].layer:
            last[n.level] = n
    return [last[level].id for level in sorted(last)]


def path_network(
    cell: Cell,
    nodes: Sequence[LatticeNode],
    channels: int,
    rsp_ratio: float,
    rsp_depths: Sequence[int],
    num_classes: int,
    kept: dict[str, list[tuple[str, float]]] | None = None,
    head_channels: int = HEAD_CHANNELS,
    name: str = "lattice",
    provenance: Provenance | None = None,
    class_names: Sequence[str] | None = None,
    encoder: SearchEncoder | None = None,
) -> Genotype:
    """The lattice restricted to ``kept`` (node id -> [(source id, attention weight)]; None: every
    candidate, weighted uniformly); nodes missing from ``kept`` are left out. A node's second cell
    input fuses its kept paths from the previous layer, its first those from two layers back; a side
    with none takes the other's. With an ``encoder`` (the lattice's), the levels a kept path reads come
    first, as encoder nodes."""
    if kept is None:
        kept = {n.id: [(src, 1.0 / len(n.candidates)) for src in n.candidates] for n in nodes}
    if encoder is None:
        out_nodes = _stems(channels, 4 * 2 ** min(n.level for n in nodes))
    else:
        read = {src for paths in kept.values() for src, _ in paths}
        out_nodes = [n for n in encoder_nodes(encoder) if n.id in read]
    head = set(head_candidates(nodes))
    last_layer: dict[int, str] = {}
    for node in nodes:
        if node.id not in kept:
            continue
        paths = kept[node.id]
        recent = [p for p in paths if p[0] in node.previous] or [p for p in paths if p[0] in node.two_back]
        older = [p for p in paths if p[0] in node.two_back] or recent
        depth = rsp_depths[node.level]
        out_nodes.append(
            Node(
                id=node.id,
                cell=CELL,
                reduction=4 * 2**node.level,
                channels=channels * 2**node.level,
                inputs=[_attention_slot(older), _attention_slot(recent)],
                partial=Partial(ratio=rsp_ratio, depth=depth) if depth else None,
            )
        )
        if node.id in head:
            last_layer[node.level] = node.id
    return Genotype(
        format_version=1,
        name=name,
        cells={CELL: cell},
        encoders=_encoders(encoder),
        network=Network(nodes=out_nodes),
        head=FusionHead(type="fusion", inputs=list(last_layer.values()), channels=head_channels),
        defaults=_defaults(num_classes, class_names),
        provenance=provenance or Provenance(),
    )


def _attention_slot(paths: list[tuple[str, float]]) -> InputSlot:
    """Weights rounded to four places for a readable spec, never to zero (the compiler normalises them)."""
    return InputSlot(fuse="attention", paths=[Path(node=src, weight=max(round(w, 4), 1e-4)) for src, w in paths])
