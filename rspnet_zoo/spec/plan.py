"""Lowering: a validated Genotype becomes a plan with every channel count, stride, dilation and input resolved.

One frozen dataclass per node kind (``CellPlan``, ``TemplatePlan``, ``LayerPlan``, ``EncoderPlan``), each made
by its own lowering function from a ``Lowering`` context (the resolved states so far and the output stride); the
builder in ``rspnet_zoo.nn.model`` maps each plan type to its module. The errors found here are the ones resolving
finds (widths, resolutions); the graph itself is checked first by ``graph.py``.
State 0 is the image; node i of the network is state i + 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from rspnet_zoo.errors import SpecError, ZooError, pointer
from rspnet_zoo.spec.features import FeaturePlan
from rspnet_zoo.spec.graph import (
    cell_errors,
    check_cells,
    check_encoders,
    check_node_kinds,
    check_reach_head,
    encoder_errors,
    is_pow2,
    node_index,
    node_kind,
    node_kind_errors,
    raise_first,
    reach_errors,
    ref_errors,
    resolve_refs,
)
from rspnet_zoo.spec.heads import HEADS
from rspnet_zoo.spec.models import MAX_IN_CHANS, Cell, Genotype, LayerArgs, Node, Partial, Template
from rspnet_zoo.spec.ops import OP_TRAITS

MAX_PARAMETERS = 2_000_000_000
# Nodes, paths and cell edges of the whole network: what building, counting and exporting cost grows with
# (a spec with every list at its schema limit has over 100,000; the largest shipped one 227).
MAX_UNITS = 4096


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
                    reductions[edge.input] * s ** OP_TRAITS[edge.op].stride_repeats,
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
    """What every node plan has: where it is, what it reads, and what it gives."""

    index: int
    id: str
    slots: tuple[SlotPlan, ...]
    out_channels: int
    reduction: int  # nominal output stride


@dataclass(frozen=True)
class CellPlan(NodePlan):
    """A DARTS cell instance: inputs brought to C at ``input_reduction``, the cell at the innermost width
    of the RSP split (``widths``: C_0 = C > C_1 > ... > C_depth), strided or dilated."""

    channels: int
    input_reduction: int  # actual resolution the inputs are brought to
    stride: int
    dilation: int
    concat: tuple[int, ...]
    layout: CellLayout
    widths: tuple[int, ...]


@dataclass(frozen=True)
class TemplatePlan(NodePlan):
    """A nas-segm template cell: it reads its paths as they are; widths and stride come from its ops."""

    concat: tuple[int, ...]
    layout: CellLayout


@dataclass(frozen=True)
class LayerPlan(NodePlan):
    """A plain layer reading one path as it is."""

    layer: str
    args: LayerArgs
    stride: int
    dilation: int

    @property
    def input(self) -> PathPlan:
        return self.slots[0].paths[0]


@dataclass(frozen=True)
class EncoderPlan(NodePlan):
    """A feature level of a timm encoder: ``level`` of ``encoder``, as wide and as reduced as the spec writes
    (the builder holds these to timm's ``feature_info``). It reads the image itself, so ``slots`` is empty."""

    encoder: str
    level: int


@dataclass
class NetworkPlan:
    in_chans: int
    output_stride: int
    nodes: list[NodePlan]
    head_inputs: list[FeaturePlan]
    features: list[FeaturePlan] = field(default_factory=list)
    aux_input: FeaturePlan | None = None

    def encoder_levels(self) -> dict[str, list[EncoderPlan]]:
        """Each encoder the nodes read (in the order of its first level node), with its level nodes in
        node order; an encoder no node reads is not here, and is not built."""
        levels: dict[str, list[EncoderPlan]] = {}
        for n in self.nodes:
            if isinstance(n, EncoderPlan):
                levels.setdefault(n.encoder, []).append(n)
        return levels


@dataclass(frozen=True)
class Lowering:
    """What lowering a node needs: the spec, node id -> state, the width and nominal reduction of every
    state so far, and the output stride (reductions past it become dilation)."""

    genotype: Genotype
    index: dict[str, int]
    widths: list[int]
    reductions: list[int]
    output_stride: int

    def actual(self, reduction: int) -> int:
        return min(reduction, self.output_stride)


def partial_widths(channels: int, partial: Partial | None) -> tuple[int, ...]:
    """Widths C_0 = C > C_1 > ... > C_depth of the recursive stage-partial split."""
    widths = [channels]
    if partial is not None:
        for _ in range(partial.depth):
            widths.append(int(round(widths[-1] * partial.ratio)))
    return tuple(widths)


def edge_parameter_bound(in_chs: int, out_chs: int) -> int:
    """At least the parameters of any op of the table between these widths. The largest are a 7x7
    separable conv (98c + c^2 + co + 2c + 2o), a full dilated 5x5 conv (25co + 2o), a 7x1/1x7 pair
    (14c^2 + 2c, c = o) and nas-segm's stacked 5x5 (25c + co + 27o + o^2); tests hold every op to it."""
    c, o = in_chs, out_chs
    return 25 * c * o + c * c + o * o + 100 * (c + o)


def _node_parameter_bound(plan: NodePlan) -> int:
    """Paths (a 1x1 conv + BN each), edge ops, and step aggregations (n edges of width w: adapts, a
    concat's BN and 1x1, psum weights: at most 2nw(w + 2)); a layer: its conv or inverted residual."""
    if isinstance(plan, EncoderPlan):
        return 0  # timm's architecture: its size is timm's to bound
    if isinstance(plan, LayerPlan):
        c, o, k, e = plan.input.channels, plan.out_channels, plan.args.kernel, plan.args.expand_ratio
        return k * k * c * o + 3 * o + e * c * (c + k * k + o + 4)
    width = plan.channels if isinstance(plan, CellPlan) else 0
    total = sum(p.channels * width + 2 * width for slot in plan.slots for p in slot.paths)
    for step in plan.layout.steps:
        total += sum(edge_parameter_bound(e.in_chs, e.out_chs) for e in step.edges)
        total += 2 * len(step.edges) * step.width * (step.width + 2)
    return total


def _units(plan: NodePlan) -> int:
    edges = sum(len(step.edges) for step in plan.layout.steps) if isinstance(plan, (CellPlan, TemplatePlan)) else 0
    return 1 + sum(len(slot.paths) for slot in plan.slots) + edges


def lower(
    genotype: Genotype, in_chans: int | None = None, output_stride: int | None = None, num_classes: int | None = None
) -> NetworkPlan:
    """Resolve the graph. ``output_stride`` caps the reduction: deeper strides become dilation.

    The parameter cap covers the whole network, decoder and classifiers included, at the class count the
    model is built with (``num_classes`` overrides the spec's): it is checked here, before any module exists.
    """
    if in_chans is None:
        in_chans = genotype.defaults.input_size[0]
    elif not 1 <= in_chans <= MAX_IN_CHANS:  # 0 once read as "the default" and built a 3-channel model
        raise ZooError(f"in_chans={in_chans}: a model reads 1 to {MAX_IN_CHANS} input channels")
    head = HEADS[genotype.head.type]
    check_cells(genotype)
    index = resolve_refs(genotype)
    aux_ref = head.auxiliary(genotype.head)
    head_states = check_reach_head(genotype, index, head_refs(genotype))
    os_ = output_stride or max(n.reduction for n in genotype.network.nodes)
    if not is_pow2(os_):
        raise SpecError("", f"output_stride must be a power of two, got {os_}")
    check_node_kinds(genotype)
    check_encoders(genotype)

    ctx = Lowering(genotype, index, [in_chans], [1], os_)
    plan_nodes: list[NodePlan] = []
    for i, node in enumerate(genotype.network.nodes):
        plan_nodes.append(NODE_LOWERING[node_kind(node)](ctx, node, i))
        ctx.widths.append(plan_nodes[-1].out_channels)
        ctx.reductions.append(plan_nodes[-1].reduction)

    units = sum(_units(n) for n in plan_nodes)
    if units > MAX_UNITS:
        raise SpecError(
            pointer("network"),
            f"the network would have {units:,} units (nodes, paths, cell edges), at most {MAX_UNITS:,}",
        )
    head_inputs = [FeaturePlan(s, ctx.widths[s], ctx.actual(ctx.reductions[s])) for s in head_states]
    aux_input = head_inputs.pop() if aux_ref else None
    head.check(genotype.head, [ctx.reductions[s] for s in head_states])
    classes = genotype.defaults.num_classes if num_classes is None else num_classes
    head_bound = head.max_parameters(head_inputs, aux_input, genotype.head, classes)
    if head_bound + sum(_node_parameter_bound(n) for n in plan_nodes) > MAX_PARAMETERS:
        where = pointer("head") if head_bound > MAX_PARAMETERS else pointer("network")
        raise SpecError(where, f"the network would have over {MAX_PARAMETERS:.0e} parameters with {classes:,} classes")
    last_at: dict[int, int] = {}
    for n in plan_nodes:
        last_at[n.reduction] = n.index + 1
    features = [FeaturePlan(s, ctx.widths[s], ctx.actual(r)) for r, s in sorted(last_at.items())]
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


def _lower_cell_path(ctx: Lowering, node: Node, at: tuple, slot_fuse: str, path, target: int) -> PathPlan:
    """One path of a cell node, resampled to the cell's input resolution ``target`` (nominal)."""
    state = ctx.index[path.node]
    src = ctx.reductions[state]
    if slot_fuse == "attention" and path.weight is None:
        raise SpecError(pointer(*at), "fuse 'attention' needs a weight on every path")
    via = tuple(ctx.actual(r) for r in path.via or ())
    if path.via is not None:
        if node.downsample != "bilinear":
            raise SpecError(pointer(*at, "via"), "resampling through other resolutions needs downsample 'bilinear'")
        bad = next((r for r in path.via if not is_pow2(r)), None)
        if bad is not None:
            raise SpecError(pointer(*at, "via"), f"reductions are powers of two, got {bad}")
    if src < target and node.downsample == "factorized":
        if src * 2 != target:
            raise SpecError(
                pointer(*at),
                f"factorized downsampling spans one level, not {src} -> {target}; use downsample 'bilinear'",
            )
        resample, stride = "factorized", ctx.actual(target) // ctx.actual(src)
    else:
        resample, stride = ("none" if ctx.actual(src) == ctx.actual(target) and not via else "bilinear"), 1
    return PathPlan(state, ctx.widths[state], resample, stride, path.weight, via)


def _lower_cell_node(ctx: Lowering, node: Node, i: int) -> CellPlan:
    at = ("network", "nodes", i)
    cell = _node_cell(ctx.genotype, node, at)
    if cell.reduction and node.reduction < 2:
        raise SpecError(pointer(*at, "reduction"), "a reduction cell's node needs reduction >= 2")
    target = node.reduction // 2 if cell.reduction else node.reduction
    slots = tuple(
        SlotPlan(
            tuple(
                _lower_cell_path(ctx, node, (*at, "inputs", s, "paths", p), slot.fuse, path, target)
                for p, path in enumerate(slot.paths)
            ),
            slot.fuse,
        )
        for s, slot in enumerate(node.inputs)
    )
    widths = partial_widths(node.channels, node.partial)
    for k in range(1, len(widths)):
        if not 1 <= widths[k] < widths[k - 1]:
            raise SpecError(
                pointer(*at, "partial"), f"ratio leaves {widths[k]} of {widths[k - 1]} channels at depth {k}"
            )
    innermost = widths[-1]
    stride = ctx.actual(node.reduction) // ctx.actual(target)
    layout = cell_layout(cell, [innermost] * cell.num_inputs, [ctx.actual(target)] * cell.num_inputs, stride)
    return CellPlan(
        index=i,
        id=node.id,
        slots=slots,
        out_channels=len(cell.concat) * innermost + node.channels - innermost,
        reduction=node.reduction,
        channels=node.channels,
        input_reduction=ctx.actual(target),
        stride=stride,
        dilation=node.reduction // ctx.actual(node.reduction),
        concat=tuple(cell.concat),
        layout=layout,
        widths=widths,
    )


def _lower_template_node(ctx: Lowering, node: Node, i: int) -> TemplatePlan:
    """A cell that reads its paths as they are: widths and the output reduction follow from the ops,
    and the node's ``channels`` and ``reduction`` must say what they come to."""
    at = ("network", "nodes", i)
    cell = _node_cell(ctx.genotype, node, at)
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
        state = ctx.index[slot.paths[0].node]
        states.append(state)
        slots.append(SlotPlan((PathPlan(state, ctx.widths[state], "none", 1, None, project=False),), slot.fuse))
    template = node.template
    if not is_pow2(template.stride):
        raise SpecError(pointer(*at, "template", "stride"), f"must be a power of two, got {template.stride}")
    layout = cell_layout(
        cell, [ctx.widths[s] for s in states], [ctx.reductions[s] for s in states], template.stride, template
    )
    for s, step in enumerate(layout.steps):
        for e, edge in enumerate(step.edges):
            if edge.out_chs != edge.in_chs and not OP_TRAITS[edge.op].widens:
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
    if max(layout.reductions) > ctx.output_stride:
        raise SpecError(
            pointer(*at, "template"),
            f"output_stride {ctx.output_stride} is finer than this node's 1/{max(layout.reductions)}: "
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
    return TemplatePlan(
        index=i,
        id=node.id,
        slots=tuple(slots),
        out_channels=out_chs,
        reduction=reduction,
        concat=tuple(cell.concat),
        layout=layout,
    )


def _lower_layer_node(ctx: Lowering, node: Node, i: int) -> LayerPlan:
    at = ("network", "nodes", i)
    if len(node.inputs) != 1 or len(node.inputs[0].paths) != 1:
        raise SpecError(pointer(*at, "inputs"), "a layer node reads exactly one path")
    if node.partial is not None:
        raise SpecError(pointer(*at, "partial"), "partial channels apply to cell nodes only")
    if node.inputs[0].paths[0].via is not None:
        raise SpecError(pointer(*at, "inputs", 0, "paths", 0, "via"), "a layer reads its input as it is")
    state = ctx.index[node.inputs[0].paths[0].node]
    src = ctx.reductions[state]
    if node.reduction not in (src, 2 * src):
        raise SpecError(
            pointer(*at, "reduction"),
            f"a layer keeps or halves the resolution: input is at {src}, node says {node.reduction}",
        )
    return LayerPlan(
        index=i,
        id=node.id,
        slots=(SlotPlan((PathPlan(state, ctx.widths[state], "none", 1, None),), "sum"),),
        out_channels=node.channels,
        reduction=node.reduction,
        layer=node.layer,
        args=node.args or LayerArgs(),
        stride=ctx.actual(node.reduction) // ctx.actual(src),
        dilation=node.reduction // ctx.actual(node.reduction),
    )


def _lower_encoder_node(ctx: Lowering, node: Node, i: int) -> EncoderPlan:
    """The level as the spec writes it; timm's stride is the encoder's own, so a finer output stride is
    asked of timm (the encoder's ``output_stride`` kwarg), never turned into dilation here."""
    if node.reduction > ctx.output_stride:
        raise SpecError(
            pointer("network", "nodes", i, "reduction"),
            f"output_stride {ctx.output_stride} is finer than this encoder level's 1/{node.reduction}: "
            f"set output_stride in encoders/{node.encoder}/kwargs and the levels' reductions to what timm gives",
        )
    return EncoderPlan(
        index=i,
        id=node.id,
        slots=(),
        out_channels=node.channels,
        reduction=node.reduction,
        encoder=node.encoder,
        level=node.level,
    )


NODE_LOWERING: dict[str, Callable[[Lowering, Node, int], NodePlan]] = {
    "cell": _lower_cell_node,
    "template": _lower_template_node,
    "layer": _lower_layer_node,
    "encoder": _lower_encoder_node,
}


def head_refs(genotype: Genotype) -> list[tuple[str, str]]:
    """The nodes the head reads, then the one its auxiliary classifier reads (if any), with their pointers."""
    head = HEADS[genotype.head.type]
    aux_ref = head.auxiliary(genotype.head)
    return head.reads(genotype.head) + ([aux_ref] if aux_ref else [])


def semantic_errors(genotype: Genotype) -> Iterator[SpecError]:
    """Every semantic error: the defaults, cell, node-kind and reference checks each report all they find,
    then (once references resolve) every node that never reaches the head; lowering, which needs those to
    hold, adds its first error only when they do."""
    d = genotype.defaults
    for key in ("mean", "std"):
        if len(getattr(d, key)) != d.input_size[0]:
            yield SpecError(pointer("defaults", key), f"needs {d.input_size[0]} values, one per input channel")
    if d.class_names is not None and len(d.class_names) != d.num_classes:
        names = f"has {len(d.class_names)} names for {d.num_classes} classes"
        yield SpecError(pointer("defaults", "class_names"), names)
    structural = [
        *cell_errors(genotype),
        *encoder_errors(genotype),
        *node_kind_errors(genotype),
        *ref_errors(genotype),
    ]
    if not structural:
        structural = list(reach_errors(genotype, node_index(genotype), head_refs(genotype)))
    yield from structural
    if not structural:
        try:
            lower(genotype)
        except SpecError as e:
            yield e


def check_genotype(genotype: Genotype) -> None:
    """Every semantic check; raises the first SpecError."""
    raise_first(semantic_errors(genotype))
