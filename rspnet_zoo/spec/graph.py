"""Graph validation: what a spec's node graph and cells must satisfy before anything is sized.

Node ids become state indices (state 0 is the image, node i is state i + 1); references must name an
earlier node, every node must reach the head, and every cell edge must read an existing state with an
op the ops table knows; an encoder's level nodes read only the image and come first. Each violation is
a SpecError with its JSON pointer; the ``*_errors`` checks yield every one they find (``validate`` lists
them), ``check_*`` raise the first.
"""

from __future__ import annotations

from collections.abc import Iterator

from rspnet_zoo.errors import SpecError, pointer
from rspnet_zoo.spec.models import Genotype, Node
from rspnet_zoo.spec.ops import OP_TRAITS

IMAGE = "input"


def is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def cell_errors(genotype: Genotype) -> Iterator[SpecError]:
    """Every unknown op, dangling edge input and bad concat of every cell, in document order."""
    for name, cell in genotype.cells.items():
        at = ("cells", name)
        n_states = cell.num_inputs
        for s, step in enumerate(cell.steps):
            for e, edge in enumerate(step.edges):
                if edge.op not in OP_TRAITS:
                    yield SpecError(
                        pointer(*at, "steps", s, "edges", e, "op"),
                        f"unknown op '{edge.op}' (known: {', '.join(sorted(OP_TRAITS))})",
                    )
                if edge.input >= n_states:
                    yield SpecError(
                        pointer(*at, "steps", s, "edges", e, "input"),
                        f"step {s} reads state {edge.input}, but only states 0..{n_states - 1} exist before it",
                    )
            n_states += 1
        for c, state in enumerate(cell.concat):
            if state >= n_states:
                yield SpecError(pointer(*at, "concat", c), f"state {state} does not exist (the cell has {n_states})")
        if len(set(cell.concat)) != len(cell.concat):
            yield SpecError(pointer(*at, "concat"), "lists a state twice")


NODE_KINDS = ("cell", "layer", "encoder")  # the field a node names its kind by


def node_kind(node: Node) -> str:
    """'encoder', 'layer', 'template' (a cell node with nas-segm mechanics) or 'cell'."""
    if node.encoder is not None:
        return "encoder"
    return "layer" if node.layer is not None else "template" if node.template is not None else "cell"


# Set by the builder from the network (in_chans) and from the node graph (the levels read), never by a spec.
RESERVED_KWARGS = frozenset(
    {
        "features_only",
        "out_indices",
        "feature_cls",
        "feature_cfg",
        "output_fmt",
        "in_chans",
        "num_classes",
        "global_pool",
        "pretrained",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "pretrained_strict",
        "checkpoint_path",
        "cache_dir",
    }
)
IMAGE_ONLY = [{"paths": [{"node": "input"}]}]


def node_kind_errors(genotype: Genotype) -> Iterator[SpecError]:
    """Each node is exactly one kind (cell, template cell, layer or encoder level) with that kind's fields
    only; encoder levels name a declared encoder and a level, read only the image, and come first."""
    first_other: str | None = None
    read: dict[tuple[str, int], str] = {}
    for i, node in enumerate(genotype.network.nodes):
        at = ("network", "nodes", i)
        if not is_pow2(node.reduction):
            yield SpecError(pointer(*at, "reduction"), f"must be a power of two, got {node.reduction}")
        if sum(getattr(node, kind) is not None for kind in NODE_KINDS) != 1:
            yield SpecError(pointer(*at), "a node names exactly one of 'cell', 'layer' and 'encoder'")
        if node.args is not None and node.layer is None:
            yield SpecError(pointer(*at, "args"), "only layer nodes take 'args'")
        if node.template is not None and node.cell is None:
            yield SpecError(pointer(*at, "template"), "only cell nodes take 'template'")
        if node.level is not None and node.encoder is None:
            yield SpecError(pointer(*at, "level"), "only encoder nodes take 'level'")
        if node.encoder is None:
            first_other = first_other or node.id
            continue
        yield from _encoder_node_errors(genotype, node, at, first_other, read)


def _encoder_node_errors(
    genotype: Genotype, node: Node, at: tuple, first_other: str | None, read: dict[tuple[str, int], str]
) -> Iterator[SpecError]:
    if node.encoder not in genotype.encoders:
        known = ", ".join(genotype.encoders) or "none"
        yield SpecError(pointer(*at, "encoder"), f"unknown encoder '{node.encoder}' (spec has: {known})")
    if node.level is None:
        yield SpecError(pointer(*at), "an encoder node names its 'level' (an index into timm's feature_info)")
    elif (node.encoder, node.level) in read:
        other = read[node.encoder, node.level]
        yield SpecError(pointer(*at, "level"), f"node '{other}' reads level {node.level} of '{node.encoder}' already")
    else:
        read[node.encoder, node.level] = node.id
    if [slot.model_dump(exclude_defaults=True) for slot in node.inputs] != IMAGE_ONLY:
        yield SpecError(
            pointer(*at, "inputs"), 'an encoder level reads only the image: [{"paths": [{"node": "input"}]}]'
        )
    if node.partial is not None:
        yield SpecError(pointer(*at, "partial"), "partial channels apply to cell nodes only")
    if first_other is not None:
        yield SpecError(pointer(*at), f"encoder nodes come first in the network, but '{first_other}' comes before it")


def encoder_errors(genotype: Genotype) -> Iterator[SpecError]:
    """Every encoder keyword argument the builder sets itself."""
    for name, encoder in genotype.encoders.items():
        for key in encoder.kwargs:
            if key in RESERVED_KWARGS:
                yield SpecError(
                    pointer("encoders", name, "kwargs", key),
                    f"'{key}' is set by the builder (from the network and the levels its nodes read)",
                )


def raise_first(errors: Iterator[SpecError]) -> None:
    error = next(errors, None)
    if error is not None:
        raise error


def check_cells(genotype: Genotype) -> None:
    raise_first(cell_errors(genotype))


def check_node_kinds(genotype: Genotype) -> None:
    raise_first(node_kind_errors(genotype))


def check_encoders(genotype: Genotype) -> None:
    raise_first(encoder_errors(genotype))


def node_index(genotype: Genotype) -> dict[str, int]:
    """Node id -> state index (the first node of an id), the image as state 0."""
    index: dict[str, int] = {}
    for i, node in enumerate(genotype.network.nodes):
        index.setdefault(node.id, i + 1)
    return {**index, IMAGE: 0}


def ref_errors(genotype: Genotype) -> Iterator[SpecError]:
    """Every duplicate or reserved node id, dangling and forward reference and cycle, in document order."""
    nodes = genotype.network.nodes
    index = node_index(genotype)
    seen: set[str] = {IMAGE}
    for i, node in enumerate(nodes):
        if node.id in seen:
            yield SpecError(pointer("network", "nodes", i, "id"), f"duplicate or reserved node id '{node.id}'")
        seen.add(node.id)
    for i, node in enumerate(nodes):
        for s, slot in enumerate(node.inputs):
            for p, path in enumerate(slot.paths):
                at = pointer("network", "nodes", i, "inputs", s, "paths", p, "node")
                ref = index.get(path.node)
                if ref is None:
                    yield SpecError(at, f"dangling input: no node '{path.node}'")
                elif ref == i + 1:
                    yield SpecError(at, f"cycle: node '{node.id}' reads its own output")
                elif ref > i + 1:
                    kind = "cycle" if _reaches(nodes, ref - 1, node.id, index) else "forward reference"
                    yield SpecError(at, f"{kind}: node '{node.id}' reads '{path.node}', which comes after it")


def resolve_refs(genotype: Genotype) -> dict[str, int]:
    """Map node ids to state indices; refuse duplicates, dangling and forward references, cycles."""
    raise_first(ref_errors(genotype))
    return node_index(genotype)


def _reaches(nodes: list[Node], start: int, target: str, index: dict[str, int]) -> bool:
    """Does node ``start`` (transitively) read ``target``?"""
    stack, seen = [start], set()
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        for slot in nodes[i].inputs:
            for path in slot.paths:
                if path.node == target:
                    return True
                j = index.get(path.node)
                if j:
                    stack.append(j - 1)
    return False


def reach_errors(genotype: Genotype, index: dict[str, int], refs: list[tuple[str, str]]) -> Iterator[SpecError]:
    """Every head ref (a (pointer, node id) pair) that names no node, and every node that feeds none of them."""
    nodes = genotype.network.nodes
    alive: set[int] = set()
    for at, ref in refs:
        if ref not in index or ref == IMAGE:
            yield SpecError(at, f"dangling input: no node '{ref}'")
        else:
            alive.add(index[ref])
    for i in range(len(nodes), 0, -1):
        if i in alive:
            alive.update(index[p.node] for slot in nodes[i - 1].inputs for p in slot.paths if p.node in index)
    for i, node in enumerate(nodes):
        if i + 1 not in alive:
            yield SpecError(pointer("network", "nodes", i), f"node '{node.id}' never reaches the head")


def check_reach_head(genotype: Genotype, index: dict[str, int], refs: list[tuple[str, str]]) -> list[int]:
    """States of the head's ``refs`` ((pointer, node id) pairs); every node must feed one of them."""
    raise_first(reach_errors(genotype, index, refs))
    return [index[ref] for _, ref in refs]
