"""The builder: walks a lowered plan and assembles a timm-compatible ``nn.Module``.

Every node reads earlier states by index from one list, so the forward pass is a flat loop that
TorchScript, torch.fx and torch.compile all follow. No ``from __future__ import annotations`` here: fx
copies ``forward``'s annotations into the graph it traces, and TorchScript cannot read them as strings
(``torch.jit.script`` of a timm or torchvision fx feature extractor would fail).
"""

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, SelectAdaptivePool2d
from timm.models._features import feature_take_indices
from torch import nn

from rspnet_zoo.errors import ZooError
from rspnet_zoo.nn.encoders import create_encoder, crop, image_convs, pad_to
from rspnet_zoo.nn.heads import DECODERS, HEADS, AuxiliaryClassifier
from rspnet_zoo.nn.ops import AGGREGATES, ConvBNAct, FactorizedReduce, InvertedResidual, ReLUConvBN, make_op
from rspnet_zoo.spec.models import Genotype
from rspnet_zoo.spec.plan import (
    CellLayout,
    CellPlan,
    EncoderPlan,
    LayerPlan,
    NetworkPlan,
    NodePlan,
    PathPlan,
    SlotPlan,
    TemplatePlan,
    lower,
)


def _reduced(size: list[int], reduction: int) -> list[int]:
    """Spatial size after ``reduction``: what a chain of padded stride-2 convs produces (ceil)."""
    return [(size[0] + reduction - 1) // reduction, (size[1] + reduction - 1) // reduction]


class PathInput(nn.Module):
    """Brings one path to the node's resolution (bilinear, through any ``via`` resolutions first, or
    factorized) and, for DARTS cells, to the cell's width."""

    def __init__(self, path: PathPlan, out_chs: int, target_reduction: int):
        super().__init__()
        self.resample = path.resample == "bilinear"
        self.reductions: list[int] = [*path.via, target_reduction]
        if path.resample == "factorized":
            self.proj: nn.Module = FactorizedReduce(path.channels, out_chs, path.stride)
        elif path.project:
            self.proj = ReLUConvBN(path.channels, out_chs)
        else:
            self.proj = nn.Identity()

    def forward(self, x: torch.Tensor, size: list[int]) -> torch.Tensor:
        if self.resample:
            for reduction in self.reductions:
                x = F.interpolate(x, size=_reduced(size, reduction), mode="bilinear", align_corners=False)
        return self.proj(x)


class InputFusion(nn.Module):
    """One input state of a node: its paths brought to a common shape and summed (attention-weighted)."""

    def __init__(self, slot: SlotPlan, out_chs: int, target_reduction: int):
        super().__init__()
        self.states: list[int] = [p.state for p in slot.paths]
        self.paths = nn.ModuleList([PathInput(p, out_chs, target_reduction) for p in slot.paths])
        weighted = slot.fuse == "attention"
        total = sum(p.weight or 0.0 for p in slot.paths) if weighted else 0.0
        self.weights: list[float] = [(p.weight or 0.0) / total if total > 0 else 1.0 for p in slot.paths]
        self.weighted = weighted

    def forward(self, states: list[torch.Tensor], size: list[int], weights: torch.Tensor | None = None) -> torch.Tensor:
        """``weights`` (one per path), when given, replace the spec's: the path search's attention."""
        out = torch.zeros(0)
        for i, path in enumerate(self.paths):
            y = path(states[self.states[i]], size)
            if weights is not None:
                y = y * weights[i]
            elif self.weighted:
                y = y * self.weights[i]
            out = y if i == 0 else out + y
        return out


class CellModule(nn.Module):
    """A cell as its layout says: each step aggregates its edges; the output concatenates the listed states.

    In training, drop path zeroes whole samples of every edge output that is not an identity (DARTS).
    """

    def __init__(self, layout: CellLayout, concat: list[int], dilation: int, drop_path_rate: float = 0.0):
        super().__init__()
        self.ops = nn.ModuleList()
        self.aggregates = nn.ModuleList()
        self.sources: list[int] = []
        self.step_of: list[int] = []
        self.droppable: list[bool] = []
        for j, step in enumerate(layout.steps):
            for edge in step.edges:
                op = make_op(edge.op, edge.in_chs, edge.stride, dilation, edge.out_chs)
                self.ops.append(op)
                self.sources.append(edge.source)
                self.step_of.append(j)
                self.droppable.append(drop_path_rate > 0 and not isinstance(op, nn.Identity))
            resize = [e.reduction != step.reduction for e in step.edges]
            self.aggregates.append(
                AGGREGATES[step.aggregate]([e.out_chs for e in step.edges], step.width, resize, step.target)
            )
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.concat: list[int] = list(concat)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        states = list(inputs)
        for j, aggregate in enumerate(self.aggregates):
            outs: list[torch.Tensor] = []
            for i, op in enumerate(self.ops):
                if self.step_of[i] == j:
                    y = op(states[self.sources[i]])
                    if self.droppable[i]:
                        y = self.drop_path(y)
                    outs.append(y)
            states.append(aggregate(outs))
        if len(self.concat) == 1:
            return states[self.concat[0]]
        return torch.cat([states[s] for s in self.concat], dim=1)


class PartialStage(nn.Module):
    """RSP: the first ``split`` channels of every input go through ``inner``; the rest of the last
    input bypass it (pooled if the node strides) and are concatenated to its output. The 1x1
    transition that merges the two halves is the reading node's own input projection, so the
    split saves the cell's cost on the bypassed channels and adds no parameters."""

    def __init__(self, inner: nn.Module, split: int, stride: int):
        super().__init__()
        self.inner = inner
        self.split = split
        self.bypass = nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        y = self.inner([x[:, : self.split] for x in inputs])
        return torch.cat([y, self.bypass(inputs[-1][:, self.split :])], dim=1)


class CellNode(nn.Module):
    """A cell instance: its input fusions, then the cell ``body`` (a search passes its own, see ``GenotypeNet``)."""

    def __init__(self, inputs: list[InputFusion], body: nn.Module):
        super().__init__()
        self.inputs = nn.ModuleList(inputs)
        self.body = body

    def fuse_inputs(
        self, states: list[torch.Tensor], size: list[int], fusion_weights: list[torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        xs: list[torch.Tensor] = []
        for i, fusion in enumerate(self.inputs):
            xs.append(fusion(states, size, None if fusion_weights is None else fusion_weights[i]))
        return xs

    def forward(self, states: list[torch.Tensor], size: list[int]) -> torch.Tensor:
        return self.body(self.fuse_inputs(states, size))

    def forward_weighted(
        self,
        states: list[torch.Tensor],
        size: list[int],
        fusion_weights: list[torch.Tensor] | None,
        cell_args: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """``forward`` with these path weights per input, and ``cell_args`` for a search cell's body."""
        return self.body(self.fuse_inputs(states, size, fusion_weights), *cell_args)


def _make_layer(plan: LayerPlan) -> nn.Module:
    a, in_chs = plan.args, plan.input.channels
    if plan.layer == "inverted_residual":
        return InvertedResidual(in_chs, plan.out_channels, a.kernel, plan.stride, plan.dilation, a.expand_ratio)
    return ConvBNAct(in_chs, plan.out_channels, a.kernel, plan.stride, plan.dilation, a.act, a.pre_act, a.bias)


class LayerNode(nn.Module):
    """A plain layer: it reads one state as it is, so fusion weights and cell arguments pass it by."""

    def __init__(self, plan: LayerPlan):
        super().__init__()
        self.state = plan.input.state
        self.layer = _make_layer(plan)

    def forward(self, states: list[torch.Tensor], size: list[int]) -> torch.Tensor:
        return self.layer(states[self.state])

    def forward_weighted(self, states, size, fusion_weights, cell_args) -> torch.Tensor:
        return self(states, size)


class EncoderLevel(nn.Module):
    """A feature level of a shared timm encoder (``GenotypeNet.encoders``). The network runs each encoder once
    and puts its levels at their nodes' states before the other nodes run; this node holds no weights and
    passes its state on, so that every node index keeps its module (``nodes.<i>``)."""

    def __init__(self, plan: EncoderPlan):
        super().__init__()
        self.state = plan.index + 1
        self.encoder = plan.encoder
        self.level = plan.level

    def forward(self, states: list[torch.Tensor], size: list[int]) -> torch.Tensor:
        return states[self.state]


CellBody = Callable[[CellPlan], nn.Module]  # a cell node's body from its plan: (xs, *cell_args) -> output


def _cell_node(plan: CellPlan, drop_path_rate: float, cell_body: CellBody | None) -> CellNode:
    """Inputs brought to C; the cell at the innermost width, wrapped once per level of the partial split."""
    inputs = [InputFusion(slot, plan.channels, plan.input_reduction) for slot in plan.slots]
    if cell_body is not None:
        return CellNode(inputs, cell_body(plan))
    body: nn.Module = CellModule(plan.layout, list(plan.concat), plan.dilation, drop_path_rate)
    for k in range(len(plan.widths) - 1, 0, -1):
        body = PartialStage(body, plan.widths[k], plan.stride)
    return CellNode(inputs, body)


def _template_node(plan: TemplatePlan, drop_path_rate: float, cell_body: CellBody | None) -> CellNode:
    """Paths read as they are; the cell as its layout says, no dilation."""
    inputs = [InputFusion(slot, plan.out_channels, plan.reduction) for slot in plan.slots]
    return CellNode(inputs, CellModule(plan.layout, list(plan.concat), 1, drop_path_rate))


NODE_MODULES: dict[type[NodePlan], Callable[[Any, float, CellBody | None], nn.Module]] = {
    CellPlan: _cell_node,
    TemplatePlan: _template_node,
    LayerPlan: lambda plan, drop_path_rate, cell_body: LayerNode(plan),
    EncoderPlan: lambda plan, drop_path_rate, cell_body: EncoderLevel(plan),
}


def _path_input_convs(path: PathPlan) -> tuple[str, ...]:
    """Inside a path's ``proj`` (as ``PathInput`` builds it): the convs that read what the path carries."""
    if path.resample == "factorized":
        return FactorizedReduce.input_convs
    return ReLUConvBN.input_convs if path.project else ()


def _layer_input_convs(plan: LayerPlan) -> tuple[str, ...]:
    """Inside a layer node's ``layer`` (as ``_make_layer`` builds it): the convs that read its input."""
    if plan.layer == "inverted_residual":
        return InvertedResidual.input_convs
    return ConvBNAct.input_convs_of(plan.args.pre_act)


def first_conv_names(plan: NetworkPlan) -> tuple[str, ...]:
    """Module paths of the convs that read the image (timm adapts them for ``in_chans``), from the plan, so that a
    model's cfg can name them before the model is built."""
    names: list[str] = []
    for node in plan.nodes:
        if isinstance(node, LayerPlan):
            if node.input.state == 0:
                names += [f"nodes.{node.index}.layer.{conv}" for conv in _layer_input_convs(node)]
            continue
        for s, slot in enumerate(node.slots):
            for p, path in enumerate(slot.paths):
                if path.state == 0:
                    names += [f"nodes.{node.index}.inputs.{s}.paths.{p}.proj.{c}" for c in _path_input_convs(path)]
    return tuple(names)


class GenotypeNet(nn.Module):
    """A compiled genotype spec: network graph -> decoder -> dropout -> classifier.

    Dense heads: ``forward_features`` returns the decoder's feature map (``num_features`` channels),
    ``forward_head`` the logits at that resolution, and ``forward`` brings them to the input size
    unless the head says ``upsample: none`` (then ``output_reduction`` says where they are).
    Classifier heads: ``forward_head`` pools globally (the head's ``pool``, or timm's ``global_pool``;
    ``''`` pools nothing) and ``forward`` returns ``(B, num_classes)``; with ``aux_head=True`` and in
    training mode it returns ``(logits, aux_logits)``, as DARTS does.

    The seams a search needs: ``cell_body(plan)``, when given, builds every cell node's body in place of
    the compiled cell (a supernet's mixed-op cell), and ``forward_weighted`` is ``forward`` with
    per-node fusion weights in place of the spec's and arguments handed to every cell body.

    ``plan`` is the lowering of ``genotype`` at these arguments, when the caller made it already (the zoo
    lowers once for a model's cfg and the model); ``self.plan`` keeps it, so a copy of the model (a meta one
    to count FLOPs) is built without lowering again.

    Encoders: each timm encoder the nodes read is one ``features_only`` module, ``encoders.<name>``, run once
    per forward on the image zero-padded to a multiple of its deepest level's reduction; each level is
    cropped to ``ceil(size / reduction)``, as every other node's output is sized. ``pretrained_encoders``
    loads the weights the spec names (timm's, as timm loads them; ``encoder_overlays`` maps an encoder's name
    to timm's ``pretrained_cfg_overlay``, e.g. ``dict(file=...)``); the zoo turns it off where the whole
    network's weights are loaded next.
    """

    encoder_multiples: list[int]  # per encoder: the image is padded to a multiple of its deepest reduction
    level_sources: list[tuple[int, int, int]]  # per encoder level node: encoder, position in its output, reduction

    def __init__(
        self,
        genotype: Genotype | dict,
        num_classes: int | None = None,
        in_chans: int | None = None,
        output_stride: int | None = None,
        drop_rate: float | None = None,
        drop_path_rate: float = 0.0,
        aux_head: bool = False,
        cell_body: CellBody | None = None,
        global_pool: str | None = None,
        plan: NetworkPlan | None = None,
        pretrained_encoders: bool = True,
        encoder_overlays: dict[str, dict] | None = None,
        **kwargs: Any,
    ):
        super().__init__()
        if kwargs:
            raise TypeError(f"unexpected model arguments: {', '.join(sorted(kwargs))}")
        if not isinstance(genotype, Genotype):
            from rspnet_zoo.spec.io import genotype_from_dict

            genotype = genotype_from_dict(genotype)
        if plan is None:
            plan = lower(genotype, in_chans, output_stride, num_classes)
        head = genotype.head
        self.genotype = genotype
        self.plan = plan
        self.num_classes = genotype.defaults.num_classes if num_classes is None else num_classes
        self.in_chans = plan.in_chans
        self.output_stride = plan.output_stride
        self.encoders = nn.ModuleDict()
        self.encoder_multiples = []
        self.level_sources = []
        for e, (name, levels) in enumerate(plan.encoder_levels().items()):
            overlay = (encoder_overlays or {}).get(name)
            self.encoders[name] = create_encoder(
                name, genotype.encoders[name], levels, plan.in_chans, pretrained_encoders, overlay
            )
            indices = sorted({n.level for n in levels})
            self.encoder_multiples.append(max(n.reduction for n in levels))
            self.level_sources += [(e, indices.index(n.level), n.reduction) for n in levels]
        self.num_levels = len(self.level_sources)
        self.nodes = nn.ModuleList([NODE_MODULES[type(n)](n, drop_path_rate, cell_body) for n in plan.nodes])
        self.decoder = DECODERS[head.type](plan.head_inputs, head)
        self.num_features = self.head_hidden_size = self.decoder.num_features
        self.is_classifier = HEADS[head.type].classifies
        if global_pool and not self.is_classifier:
            raise ZooError(f"global_pool='{global_pool}': the '{head.type}' head of '{genotype.name}' pools nothing")
        pool = head.pool if self.is_classifier and global_pool is None else global_pool
        self.global_pool = (
            SelectAdaptivePool2d(pool_type=pool, flatten=bool(pool)) if self.is_classifier else nn.Identity()
        )
        self.drop_rate = head.dropout if drop_rate is None else drop_rate
        self.head_drop = nn.Dropout(self.drop_rate)
        self.classifier_kernel = 1 if self.is_classifier else head.classifier_kernel
        self.classifier = self._make_classifier(self.num_classes)
        self.upsample: str = "none" if self.is_classifier else head.upsample
        self.output_reduction: int | None = (
            None
            if self.is_classifier
            else (1 if self.upsample != "none" else min(f.reduction for f in plan.head_inputs))
        )
        self.has_aux = aux_head
        self.aux_state = 0
        self.aux_head: nn.Module = nn.Identity()
        if aux_head:
            if plan.aux_input is None:
                raise ZooError(
                    f"'{genotype.name}' declares no auxiliary head (head.auxiliary), so aux_head=True cannot build one"
                )
            self.aux_state = plan.aux_input.state
            self.aux_head = AuxiliaryClassifier(plan.aux_input.channels, head.auxiliary, self.num_classes)
        self.feature_info = [
            dict(num_chs=f.channels, reduction=f.reduction, module=f"nodes.{f.state - 1}") for f in plan.features
        ]
        self.feature_states: list[int] = [f.state for f in plan.features]
        encoder_convs = tuple(
            f"encoders.{name}.{conv}"
            for name, module in self.encoders.items()
            for conv in image_convs(module, genotype.encoders[name].model)
        )
        self._traits = dict(first_conv=first_conv_names(plan) + encoder_convs)  # timm's traits: in_chans adaptation

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        if self.is_classifier:
            return nn.Linear(self.num_features, num_classes)
        k = self.classifier_kernel
        return nn.Conv2d(self.num_features, num_classes, k, padding=k // 2)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New classifier (and auxiliary classifier); a classifier head also takes timm's pool types."""
        self.num_classes = num_classes
        if self.is_classifier and global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.classifier = self._make_classifier(num_classes)
        if isinstance(self.aux_head, AuxiliaryClassifier):
            self.aux_head.reset_classifier(num_classes)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^encoders\." if len(self.encoders) else r"^nodes\.0\.", blocks=r"^nodes\.(\d+)")

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder level nodes' outputs, in node order: each encoder run once (see the class docstring)."""
        size = [x.shape[-2], x.shape[-1]]
        features: list[list[torch.Tensor]] = []
        for e, encoder in enumerate(self.encoders.values()):
            features.append(encoder(pad_to(x, self.encoder_multiples[e])))
        levels: list[torch.Tensor] = []
        for e, position, reduction in self.level_sources:
            levels.append(crop(features[e][position], size, reduction))
        return levels

    def run_nodes(self, x: torch.Tensor, count: int) -> list[torch.Tensor]:
        """The input and the outputs of the first ``count`` nodes (a searcher's precomputed stem, features)."""
        size = [x.shape[-2], x.shape[-1]]
        states = [x]
        if self.num_levels:
            states += self.encode(x)[:count]
        for i, node in enumerate(self.nodes):
            if i >= self.num_levels and i < count:
                states.append(node(states, size))
        return states

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.run_nodes(x, len(self.nodes)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self._outputs(self.run_nodes(x, len(self.nodes)), x)

    @torch.jit.ignore
    def forward_weighted(
        self,
        x: torch.Tensor,
        fusion_weights: Sequence[Sequence[torch.Tensor]] | None = None,
        cell_args: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``forward`` with ``fusion_weights[i]`` (one tensor of path weights per input of node i; an
        empty list keeps the spec's) and ``cell_args`` passed to every cell body after its inputs."""
        size = [x.shape[-2], x.shape[-1]]
        states = [x, *self.encode(x)]
        for i, node in enumerate(self.nodes):
            if i < self.num_levels:
                continue
            weights = list(fusion_weights[i]) if fusion_weights is not None and len(fusion_weights[i]) else None
            states.append(node.forward_weighted(states, size, weights, cell_args))
        return self._outputs(states, x)

    def _outputs(self, states: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.forward_head(self.decoder(states))
        if self.upsample != "none":
            logits = F.interpolate(
                logits, size=x.shape[-2:], mode="bilinear", align_corners=self.upsample == "bilinear_align_corners"
            )
        if self.has_aux and self.training:
            return logits, self.aux_head(states[self.aux_state])
        return logits

    @torch.jit.ignore
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """The feature maps of ``feature_info[indices]`` and, unless ``intermediates_only``, the features."""
        if output_fmt != "NCHW":
            raise ValueError("only output_fmt='NCHW' is supported")
        take, _ = feature_take_indices(len(self.feature_info), indices)
        wanted = [self.feature_states[i] for i in take]
        count = max(wanted) if intermediates_only or stop_early else len(self.nodes)
        states = self.run_nodes(x, count)
        intermediates = [states[s] for s in wanted]
        if intermediates_only:
            return intermediates
        return self.decoder(states), intermediates

    @torch.jit.ignore
    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ):
        """Drop the nodes after the last feature taken and, with ``prune_head``, the decoder and classifier."""
        take, _ = feature_take_indices(len(self.feature_info), indices)
        # a decoder's finer features can come after its coarsest one (nas-segm): keep up to the last taken
        self.nodes = self.nodes[: max(self.feature_states[i] for i in take)]
        if prune_head:
            self.decoder = nn.Identity()
            self.global_pool = nn.Identity()
            self.head_drop = nn.Identity()
            self.has_aux = False
            self.aux_head = nn.Identity()
            self.reset_classifier(0)
        return take
