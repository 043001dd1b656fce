"""Lowering: a Genotype becomes a plan with every channel count, stride, dilation and input resolved.

This is also where the semantic checks live, because resolving the graph is what finds its errors.
State 0 is the image; node i of the network is state i + 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SpecError, pointer
from .ops import OPS
from .spec import Cell, ClassifierHead, DeepLabV3PlusHead, Genotype, LayerArgs, Node, Partial, Template

IMAGE = "input"
MAX_PARAMETERS = 2_000_000_000


@dataclass(frozen=True)
class PathPlan:
    state: int
    channels: int
    resample: str  # 'none' | 'bilinear' | 'factorized'
    stride: int  # factorized only: 2, or 1 past output_stride
    weight: float | None
    via: tuple[int, ...] = ()  # bilinear only: actual reductions passed through first
    project: bool = True  # brought to the cell's C (DARTS preprocess); template nodes read paths as they are


@dataclass(frozen=True)
class EdgeLayout:
    source: int  # state index inside the cell
    op: str
    in_chs: int
    out_chs: int
    stride: int  # the stride handed to the op
    reduction: int  # of the edge's output


@dataclass(frozen=True)
class StepLayout:
    aggregate: str
    edges: tuple[EdgeLayout, ...]
    width: int  # the widest edge output: the others are adapted to it
    reduction: int
    target: int  # the edge whose output size the others are resized to


@dataclass(frozen=True)
class CellLayout:
    """Widths and reductions of every state and edge of one cell instance."""

    steps: tuple[StepLayout, ...]
    widths: tuple[int, ...]
    reductions: tuple[int, ...]


def cell_layout(
    cell: Cell, input_widths: list[int], input_reductions: list[int], stride: int, template: Template | None = None
) -> CellLayout:
    """Edges that read an input apply ``stride`` (and, with ``template.widen``, widen by it); each step
    is as wide as its widest edge and sized by its finest (or, with resize 'smaller', coarsest) one."""
    widen = template is not None and template.widen
    coarsest = template is not None and template.resize == "smaller"
    widths, reductions = list(input_widths), list(input_reductions)
    steps = []
    for step in cell.steps:
        edges = []
        for edge in step.edges:
            reads_input = edge.input < cell.num_inputs
            s = stride if reads_input else 1
            w = widths[edge.input]
            edges.append(
                EdgeLayout(
                    edge.input,
                    edge.op,
                    w,
                    w * s if widen and reads_input else w,
                    s,
                    reductions[edge.input] * s ** OPS[edge.op].stride_repeats,
                )
            )
        reduction = (max if coarsest else min)(e.reduction for e in edges)
        target = next(i for i, e in enumerate(edges) if e.reduction == reduction)
        steps.append(StepLayout(step.aggregate, tuple(edges), max(e.out_chs for e in edges), reduction, target))
        widths.append(steps[-1].width)
        reductions.append(reduction)
    return CellLayout(tuple(steps), tuple(widths), tuple(reductions))


@dataclass(frozen=True)
class SlotPlan:
    paths: tuple[PathPlan, ...]
    fuse: str


@dataclass(frozen=True)
class NodePlan:
    index: int
    id: str
    channels: int  # cell C, or a layer's output width
    out_channels: int  # cell: len(concat) * C, less (len(concat) - 1) * the bypassed channels of a partial node
    reduction: int  # nominal output stride
    actual_reduction: int  # after output_stride
    input_reduction: int  # actual resolution the inputs are brought to
    stride: int
    dilation: int
    slots: tuple[SlotPlan, ...]
    cell: Cell | None = None
    cell_name: str | None = None
    partial: Partial | None = None
    layout: CellLayout | None = None  # cell nodes: at the innermost width of a partial split
    layer: str | None = None
    args: LayerArgs | None = None


@dataclass(frozen=True)
class FeaturePlan:
    state: int
    channels: int
    reduction: int


@dataclass
class NetworkPlan:
    in_chans: int
    output_stride: int
    nodes: list[NodePlan]
    head_inputs: list[FeaturePlan]
    features: list[FeaturePlan] = field(default_factory=list)
    aux_input: FeaturePlan | None = None


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _check_cells(genotype: Genotype) -> None:
    for name, cell in genotype.cells.items():
        at = ("cells", name)
        n_states = cell.num_inputs
        for s, step in enumerate(cell.steps):
            for e, edge in enumerate(step.edges):
                if edge.op not in OPS:
                    raise SpecError(
                        pointer(*at, "steps", s, "edges", e, "op"),
                        f"unknown op '{edge.op}' (known: {', '.join(sorted(OPS))})",
                    )
                if edge.input >= n_states:
                    raise SpecError(
                        pointer(*at, "steps", s, "edges", e, "input"),
                        f"step {s} reads state {edge.input}, but only states 0..{n_states - 1} exist before it",
                    )
            n_states += 1
        for c, state in enumerate(cell.concat):
            if state >= n_states:
                raise SpecError(pointer(*at, "concat", c), f"state {state} does not exist (the cell has {n_states})")
        if len(set(cell.concat)) != len(cell.concat):
            raise SpecError(pointer(*at, "concat"), "lists a state twice")


def _resolve_refs(genotype: Genotype) -> dict[str, int]:
    """Map node ids to state indices; refuse duplicates, dangling and forward references, cycles."""
    nodes = genotype.network.nodes
    index = {node.id: i + 1 for i, node in enumerate(nodes)}
    if len(index) != len(nodes) or IMAGE in index:
        seen: set[str] = {IMAGE}
        for i, node in enumerate(nodes):
            if node.id in seen:
                raise SpecError(pointer("network", "nodes", i, "id"), f"duplicate or reserved node id '{node.id}'")
            seen.add(node.id)
    index[IMAGE] = 0
    for i, node in enumerate(nodes):
        for s, slot in enumerate(node.inputs):
            for p, path in enumerate(slot.paths):
                at = pointer("network", "nodes", i, "inputs", s, "paths", p, "node")
                ref = index.get(path.node)
                if ref is None:
                    raise SpecError(at, f"dangling input: no node '{path.node}'")
                if ref == i + 1:
                    raise SpecError(at, f"cycle: node '{node.id}' reads its own output")
                if ref > i + 1:
                    kind = "cycle" if _reaches(nodes, ref - 1, node.id, index) else "forward reference"
                    raise SpecError(at, f"{kind}: node '{node.id}' reads '{path.node}', which comes after it")
    return index


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


def _head_refs(genotype: Genotype) -> list[tuple[str, str]]:
    """(pointer, node id) of every node the head reads; a classifier's auxiliary input comes last."""
    head = genotype.head
    if isinstance(head, DeepLabV3PlusHead):
        return [(pointer("head", "input"), head.input), (pointer("head", "low_level"), head.low_level)]
    if isinstance(head, ClassifierHead):
        refs = [(pointer("head", "input"), head.input)]
        if head.auxiliary is not None:
            refs.append((pointer("head", "auxiliary", "input"), head.auxiliary.input))
        return refs
    return [(pointer("head", "inputs", i), ref) for i, ref in enumerate(head.inputs)]


def _check_reach_head(genotype: Genotype, index: dict[str, int]) -> list[int]:
    refs = _head_refs(genotype)
    head_states = []
    for at, ref in refs:
        if ref not in index or ref == IMAGE:
            raise SpecError(at, f"dangling input: no node '{ref}'")
        head_states.append(index[ref])
    nodes = genotype.network.nodes
    alive = set(head_states)
    for i in range(len(nodes), 0, -1):
        if i in alive:
            alive.update(index[p.node] for slot in nodes[i - 1].inputs for p in slot.paths)
    for i, node in enumerate(nodes):
        if i + 1 not in alive:
            raise SpecError(pointer("network", "nodes", i), f"node '{node.id}' never reaches the head")
    return head_states


def _partial_widths(channels: int, partial: Partial | None) -> list[int]:
    """Widths C_0 = C > C_1 > ... > C_depth of the recursive stage-partial split."""
    widths = [channels]
    if partial is not None:
        for _ in range(partial.depth):
            widths.append(int(round(widths[-1] * partial.ratio)))
    return widths


def _estimate_parameters(plan_nodes: list[NodePlan]) -> int:
    total = 0
    for n in plan_nodes:
        if n.cell is not None:
            c = _partial_widths(n.channels, n.partial)[-1]
            total += sum(len(step.edges) for step in n.cell.steps) * 2 * c * (c + 50)
            total += sum(p.channels * n.channels for slot in n.slots for p in slot.paths)
        else:
            total += n.out_channels * sum(p.channels for p in n.slots[0].paths) * (n.args or LayerArgs()).kernel ** 2
    return total


def lower(genotype: Genotype, in_chans: int | None = None, output_stride: int | None = None) -> NetworkPlan:
    """Resolve the graph. ``output_stride`` caps the reduction: deeper strides become dilation."""
    in_chans = in_chans or genotype.defaults.input_size[0]
    _check_cells(genotype)
    index = _resolve_refs(genotype)
    head_states = _check_reach_head(genotype, index)
    max_reduction = max(n.reduction for n in genotype.network.nodes)
    os_ = output_stride or max_reduction
    if not _is_pow2(os_):
        raise SpecError("", f"output_stride must be a power of two, got {os_}")

    def actual(r: int) -> int:
        return min(r, os_)

    widths = [in_chans]  # out channels per state
    reductions = [1]  # nominal reduction per state
    plan_nodes: list[NodePlan] = []
    for i, node in enumerate(genotype.network.nodes):
        at = ("network", "nodes", i)
        if not _is_pow2(node.reduction):
            raise SpecError(pointer(*at, "reduction"), f"must be a power of two, got {node.reduction}")
        if (node.cell is None) == (node.layer is None):
            raise SpecError(pointer(*at), "a node names exactly one of 'cell' and 'layer'")
        if node.args is not None and node.layer is None:
            raise SpecError(pointer(*at, "args"), "only layer nodes take 'args'")
        if node.template is not None and node.cell is None:
            raise SpecError(pointer(*at, "template"), "only cell nodes take 'template'")
        if node.template is not None:
            plan_nodes.append(_lower_template_node(genotype, node, i, index, widths, reductions, os_))
        elif node.cell is not None:
            plan_nodes.append(_lower_cell_node(genotype, node, i, index, widths, reductions, actual))
        else:
            plan_nodes.append(_lower_layer_node(node, i, index, widths, reductions, actual))
        widths.append(plan_nodes[-1].out_channels)
        reductions.append(node.reduction)

    if _estimate_parameters(plan_nodes) > MAX_PARAMETERS:
        raise SpecError(pointer("network"), f"the network would have over {MAX_PARAMETERS:.0e} parameters")

    head_inputs = [FeaturePlan(s, widths[s], actual(reductions[s])) for s in head_states]
    aux_input = None
    if isinstance(genotype.head, ClassifierHead) and genotype.head.auxiliary is not None:
        aux_input = head_inputs.pop()
    if isinstance(genotype.head, DeepLabV3PlusHead) and reductions[head_states[1]] > reductions[head_states[0]]:
        raise SpecError(pointer("head", "low_level"), "the low-level feature must not be coarser than the ASPP input")
    last_at: dict[int, int] = {}
    for n in plan_nodes:
        last_at[n.reduction] = n.index + 1
    features = [FeaturePlan(s, widths[s], actual(r)) for r, s in sorted(last_at.items())]
    return NetworkPlan(in_chans, os_, plan_nodes, head_inputs, features, aux_input)


def _node_cell(genotype: Genotype, node: Node, at: tuple) -> Cell:
    """The cell a node names, with as many input slots as the cell has inputs."""
    cell = genotype.cells.get(node.cell)
    if cell is None:
        raise SpecError(
            pointer(*at, "cell"), f"unknown cell '{node.cell}' (spec has: {', '.join(genotype.cells) or 'none'})"
        )
    if len(node.inputs) != cell.num_inputs:
        raise SpecError(
            pointer(*at, "inputs"),
            f"cell '{node.cell}' takes {cell.num_inputs} input(s), node gives {len(node.inputs)}",
        )
    return cell


def _lower_cell_node(genotype, node: Node, i, index, widths, reductions, actual) -> NodePlan:
    at = ("network", "nodes", i)
    cell = _node_cell(genotype, node, at)
    if cell.reduction and node.reduction < 2:
        raise SpecError(pointer(*at, "reduction"), "a reduction cell's node needs reduction >= 2")
    target = node.reduction // 2 if cell.reduction else node.reduction
    slots = []
    for s, slot in enumerate(node.inputs):
        paths = []
        for p, path in enumerate(slot.paths):
            p_at = pointer(*at, "inputs", s, "paths", p)
            state = index[path.node]
            src = reductions[state]
            if slot.fuse == "attention" and path.weight is None:
                raise SpecError(p_at, "fuse 'attention' needs a weight on every path")
            via = tuple(actual(r) for r in path.via or ())
            if path.via is not None:
                if node.downsample != "bilinear":
                    raise SpecError(
                        pointer(*at, "inputs", s, "paths", p, "via"),
                        "resampling through other resolutions needs downsample 'bilinear'",
                    )
                bad = next((r for r in path.via if not _is_pow2(r)), None)
                if bad is not None:
                    raise SpecError(
                        pointer(*at, "inputs", s, "paths", p, "via"), f"reductions are powers of two, got {bad}"
                    )
            if src < target and node.downsample == "factorized":
                if src * 2 != target:
                    raise SpecError(
                        p_at,
                        f"factorized downsampling spans one level, not {src} -> {target}; use downsample 'bilinear'",
                    )
                resample, stride = "factorized", actual(target) // actual(src)
            else:
                resample, stride = ("none" if actual(src) == actual(target) and not via else "bilinear"), 1
            paths.append(PathPlan(state, widths[state], resample, stride, path.weight, via))
        slots.append(SlotPlan(tuple(paths), slot.fuse))
    widths_partial = _partial_widths(node.channels, node.partial)
    for k in range(1, len(widths_partial)):
        if not 1 <= widths_partial[k] < widths_partial[k - 1]:
            raise SpecError(
                pointer(*at, "partial"),
                f"ratio leaves {widths_partial[k]} of {widths_partial[k - 1]} channels at depth {k}",
            )
    innermost = widths_partial[-1]
    stride = actual(node.reduction) // actual(target)
    layout = cell_layout(cell, [innermost] * cell.num_inputs, [actual(target)] * cell.num_inputs, stride)
    return NodePlan(
        index=i,
        id=node.id,
        channels=node.channels,
        out_channels=len(cell.concat) * innermost + node.channels - innermost,
        reduction=node.reduction,
        actual_reduction=actual(node.reduction),
        input_reduction=actual(target),
        stride=stride,
        dilation=node.reduction // actual(node.reduction),
        slots=tuple(slots),
        cell=cell,
        cell_name=node.cell,
        partial=node.partial,
        layout=layout,
    )


def _lower_template_node(genotype, node: Node, i, index, widths, reductions, output_stride: int) -> NodePlan:
    """A cell that reads its paths as they are: widths and the output reduction follow from the ops,
    and the node's ``channels`` and ``reduction`` must say what they come to."""
    at = ("network", "nodes", i)
    cell = _node_cell(genotype, node, at)
    if node.partial is not None:
        raise SpecError(pointer(*at, "partial"), "partial channels do not apply to template nodes")
    if cell.reduction:
        raise SpecError(
            pointer(*at, "cell"),
            f"template nodes take their stride from 'template', but '{node.cell}' is a reduction cell",
        )
    slots, states = [], []
    for s, slot in enumerate(node.inputs):
        if len(slot.paths) != 1:
            raise SpecError(pointer(*at, "inputs", s, "paths"), "a template node reads exactly one path per input")
        if slot.paths[0].via is not None:
            raise SpecError(pointer(*at, "inputs", s, "paths", 0, "via"), "template nodes read their paths as they are")
        state = index[slot.paths[0].node]
        states.append(state)
        slots.append(SlotPlan((PathPlan(state, widths[state], "none", 1, None, project=False),), slot.fuse))
    template = node.template
    if not _is_pow2(template.stride):
        raise SpecError(pointer(*at, "template", "stride"), f"must be a power of two, got {template.stride}")
    layout = cell_layout(cell, [widths[s] for s in states], [reductions[s] for s in states], template.stride, template)
    for s, step in enumerate(layout.steps):
        for e, edge in enumerate(step.edges):
            if edge.out_chs != edge.in_chs and not OPS[edge.op].widens:
                raise SpecError(
                    pointer("cells", node.cell, "steps", s, "edges", e, "op"),
                    f"'{edge.op}' keeps its width, but node '{node.id}' widens its inputs (template.widen)",
                )
    out_reductions = {layout.reductions[c] for c in cell.concat}
    if len(out_reductions) > 1:
        raise SpecError(
            pointer("cells", node.cell, "concat"),
            f"in node '{node.id}' the concatenated states have different resolutions",
        )
    reduction = out_reductions.pop()
    out_chs = sum(layout.widths[c] for c in cell.concat)
    if max(layout.reductions) > output_stride:
        raise SpecError(
            pointer(*at, "template"),
            f"output_stride {output_stride} is finer than this node's 1/{max(layout.reductions)}: "
            "template nodes do not trade stride for dilation",
        )
    if reduction != node.reduction:
        raise SpecError(
            pointer(*at, "reduction"),
            f"the template's ops put the output at 1/{reduction}, the node says 1/{node.reduction}",
        )
    if out_chs != node.channels:
        raise SpecError(
            pointer(*at, "channels"), f"the template's ops give {out_chs} channels, the node says {node.channels}"
        )
    return NodePlan(
        index=i,
        id=node.id,
        channels=node.channels,
        out_channels=out_chs,
        reduction=reduction,
        actual_reduction=reduction,
        input_reduction=reduction,
        stride=template.stride,
        dilation=1,
        slots=tuple(slots),
        cell=cell,
        cell_name=node.cell,
        layout=layout,
    )


def _lower_layer_node(node: Node, i, index, widths, reductions, actual) -> NodePlan:
    at = ("network", "nodes", i)
    if len(node.inputs) != 1 or len(node.inputs[0].paths) != 1:
        raise SpecError(pointer(*at, "inputs"), "a layer node reads exactly one path")
    if node.partial is not None:
        raise SpecError(pointer(*at, "partial"), "partial channels apply to cell nodes only")
    if node.inputs[0].paths[0].via is not None:
        raise SpecError(pointer(*at, "inputs", 0, "paths", 0, "via"), "a layer reads its input as it is")
    state = index[node.inputs[0].paths[0].node]
    src = reductions[state]
    if node.reduction not in (src, 2 * src):
        raise SpecError(
            pointer(*at, "reduction"),
            f"a layer keeps or halves the resolution: input is at {src}, node says {node.reduction}",
        )
    path = PathPlan(state, widths[state], "none", 1, None)
    return NodePlan(
        index=i,
        id=node.id,
        channels=node.channels,
        out_channels=node.channels,
        reduction=node.reduction,
        actual_reduction=actual(node.reduction),
        input_reduction=actual(src),
        stride=actual(node.reduction) // actual(src),
        dilation=node.reduction // actual(node.reduction),
        slots=(SlotPlan((path,), "sum"),),
        layer=node.layer,
        args=node.args or LayerArgs(),
    )


def check_genotype(genotype: Genotype) -> None:
    """Every semantic check; raises the first SpecError."""
    d = genotype.defaults
    for key in ("mean", "std"):
        if len(getattr(d, key)) != d.input_size[0]:
            raise SpecError(pointer("defaults", key), f"needs {d.input_size[0]} values, one per input channel")
    if d.class_names is not None and len(d.class_names) != d.num_classes:
        raise SpecError(
            pointer("defaults", "class_names"), f"has {len(d.class_names)} names for {d.num_classes} classes"
        )
    lower(genotype)
