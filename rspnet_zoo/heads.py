"""The heads table: head type -> ``HeadDef``, the one registration of a head.

A definition carries the head's spec model (``rspnet_zoo.spec``), its decoder module, the nodes it
reads (with their JSON pointers), whether it classifies, and a bound on its parameters. The spec's
``Head`` union (and so the JSON Schema) and the lowering's head checks are derived from the table.
Each decoder reads the states it needs from the list of node outputs and exposes ``num_features``;
the classifier on top belongs to the model, so ``reset_classifier`` works the same for every head.
DARTS's auxiliary classifier is here too: it reads a node output and gives logits of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Union

import torch
import torch.nn.functional as F
from pydantic import Field
from timm.layers import SelectAdaptivePool2d
from torch import nn

from . import spec
from .errors import SpecError, pointer
from .ops import ConvBNAct
from .spec import AuxiliaryHead, ClassifierHead, ConcatHead, DeepLabV3PlusHead, FusionHead, SegmentationHead, Strict

if TYPE_CHECKING:
    from .plan import FeaturePlan


class SelectFeature(nn.Module):
    """A classifier's features: one node's output map, pooled later by the model's ``global_pool``."""

    def __init__(self, inputs: list[FeaturePlan], spec: ClassifierHead):
        super().__init__()
        self.state = inputs[0].state
        self.num_features = inputs[0].channels

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        return states[self.state]


class MultiLevelDecoder(nn.Module):
    """A decoder over several levels: it reads their node outputs and brings maps to the finest size."""

    def __init__(self, inputs: list[FeaturePlan]):
        super().__init__()
        finest = min(f.reduction for f in inputs)
        self.states: list[int] = [f.state for f in inputs]
        self.reference = next(f.state for f in inputs if f.reduction == finest)
        self.resize: list[bool] = [f.reduction != finest for f in inputs]

    def to_finest(self, states: list[torch.Tensor], i: int, x: torch.Tensor) -> torch.Tensor:
        """``x``, computed from input ``i``, at the size of the finest input."""
        if not self.resize[i]:
            return x
        return F.interpolate(x, size=states[self.reference].shape[-2:], mode="bilinear", align_corners=False)


class FusionDecoder(MultiLevelDecoder):
    """Lateral 1x1 per input level, upsampled to the finest level and summed, then a 3x3 conv."""

    def __init__(self, inputs: list[FeaturePlan], spec: FusionHead):
        super().__init__(inputs)
        self.laterals = nn.ModuleList([ConvBNAct(f.channels, spec.channels, 1) for f in inputs])
        self.fuse = ConvBNAct(spec.channels, spec.channels, 3)
        self.num_features = spec.channels

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        out = torch.zeros(0)
        for i, lateral in enumerate(self.laterals):
            y = self.to_finest(states, i, lateral(states[self.states[i]]))
            out = y if i == 0 else out + y
        return self.fuse(out)


class ConcatDecoder(MultiLevelDecoder):
    """nas-segm's head: inputs upsampled to the finest, concatenated in order, ReLU -> 1x1 conv -> BN -> ReLU."""

    def __init__(self, inputs: list[FeaturePlan], spec: ConcatHead):
        super().__init__(inputs)
        self.fuse = ConvBNAct(sum(f.channels for f in inputs), spec.channels, 1, pre_act=True)
        self.num_features = spec.channels

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        xs: list[torch.Tensor] = []
        for i, state in enumerate(self.states):
            xs.append(self.to_finest(states, i, states[state]))
        return self.fuse(torch.cat(xs, dim=1))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, dilated 3x3s and an image-pool branch, fused by 1x1."""

    def __init__(self, in_chs: int, out_chs: int, rates: list[int], dropout: float = 0.5):
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNAct(in_chs, out_chs, 1)] + [ConvBNAct(in_chs, out_chs, 3, dilation=r) for r in rates]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNAct(in_chs, out_chs, 1))
        self.project = nn.Sequential(ConvBNAct(out_chs * (len(rates) + 2), out_chs, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=True))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the deep feature, upsampled onto a projected low-level feature, two 3x3 convs."""

    def __init__(self, inputs: list[FeaturePlan], spec: DeepLabV3PlusHead):
        super().__init__()
        deep, low = inputs
        self.deep_state, self.low_state = deep.state, low.state
        self.aspp = ASPP(deep.channels, spec.aspp_channels, spec.rates)
        self.low_proj = ConvBNAct(low.channels, spec.low_level_channels, 1)
        self.refine = nn.Sequential(
            ConvBNAct(spec.aspp_channels + spec.low_level_channels, spec.decoder_channels, 3),
            nn.Dropout(0.5),
            ConvBNAct(spec.decoder_channels, spec.decoder_channels, 3),
        )
        self.num_features = spec.decoder_channels

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        low = self.low_proj(states[self.low_state])
        deep = F.interpolate(
            self.aspp(states[self.deep_state]), size=low.shape[-2:], mode="bilinear", align_corners=True
        )
        return self.refine(torch.cat([deep, low], dim=1))


class AuxiliaryClassifier(nn.Module):
    """DARTS's auxiliary head. A global average pool before the linear layer is a no-op at the input
    size DARTS trains at (the 2x2 conv leaves 1x1) and lets larger inputs through."""

    def __init__(self, in_chs: int, spec: AuxiliaryHead, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(spec.pool_kernel, spec.pool_stride, padding=0, count_include_pad=False),
            ConvBNAct(in_chs, spec.channels, 1),
            nn.Conv2d(spec.channels, spec.hidden, 2, bias=False),
            nn.BatchNorm2d(spec.hidden) if spec.hidden_norm else nn.Identity(),
            nn.ReLU(inplace=False),
            SelectAdaptivePool2d(pool_type="avg", flatten=True),
        )
        self.num_features = spec.hidden
        self.classifier = nn.Linear(spec.hidden, num_classes) if num_classes > 0 else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


Ref = tuple[str, str]  # (JSON pointer, node id)


@dataclass(frozen=True)
class HeadDef:
    """One head: spec model, decoder module, the nodes it reads, and what the model does on top."""

    spec: type[Strict]
    module: Callable[[list[FeaturePlan], Any], nn.Module]
    reads: Callable[[Any], list[Ref]]  # the decoder's inputs, in the order the module takes them
    max_parameters: Callable[[list[FeaturePlan], FeaturePlan | None, Any, int], int]  # decoder + classifiers
    classifies: bool = False  # global pool -> linear, logits (B, classes); else a dense map
    auxiliary: Callable[[Any], Ref | None] = lambda spec: None  # the node an auxiliary classifier reads
    check: Callable[[Any, list[int]], None] = lambda spec, reductions: None  # nominal reductions of the reads


def _dense_classifier(head: SegmentationHead, width: int, num_classes: int) -> int:
    return head.classifier_kernel**2 * width * num_classes + num_classes


def _fusion_bound(inputs: list[FeaturePlan], aux, head: FusionHead, n: int) -> int:
    c = head.channels
    return sum(f.channels * c + 2 * c for f in inputs) + 9 * c * c + 2 * c + _dense_classifier(head, c, n)


def _concat_bound(inputs: list[FeaturePlan], aux, head: ConcatHead, n: int) -> int:
    c = head.channels
    return sum(f.channels for f in inputs) * c + 2 * c + _dense_classifier(head, c, n)


def _deeplab_bound(inputs: list[FeaturePlan], aux, head: DeepLabV3PlusHead, n: int) -> int:
    """ASPP (1x1, one 3x3 per rate, image pool, 1x1 projection), low-level 1x1, two 3x3s."""
    a, low, d, r = head.aspp_channels, head.low_level_channels, head.decoder_channels, len(head.rates)
    aspp = inputs[0].channels * a * (2 + 9 * r) + (r + 2) * a * a + 2 * a * (r + 3)
    return (
        aspp
        + inputs[1].channels * low
        + 2 * low
        + 9 * (a + low) * d
        + 9 * d * d
        + 4 * d
        + _dense_classifier(head, d, n)
    )


def _classifier_bound(inputs: list[FeaturePlan], aux: FeaturePlan | None, head: ClassifierHead, n: int) -> int:
    total = inputs[0].channels * n + n
    if aux is not None and head.auxiliary is not None:
        a = head.auxiliary
        total += aux.channels * a.channels + 2 * a.channels + 4 * a.channels * a.hidden + 2 * a.hidden
        total += a.hidden * n + n
    return total


def _low_level_not_coarser(head: DeepLabV3PlusHead, reductions: list[int]) -> None:
    if reductions[1] > reductions[0]:
        raise SpecError(pointer("head", "low_level"), "the low-level feature must not be coarser than the ASPP input")


def _listed_inputs(head: FusionHead | ConcatHead) -> list[Ref]:
    return [(pointer("head", "inputs", i), ref) for i, ref in enumerate(head.inputs)]


HEADS: dict[str, HeadDef] = {
    "fusion": HeadDef(FusionHead, FusionDecoder, _listed_inputs, _fusion_bound),
    "concat": HeadDef(ConcatHead, ConcatDecoder, _listed_inputs, _concat_bound),
    "deeplabv3plus": HeadDef(
        DeepLabV3PlusHead,
        DeepLabV3PlusDecoder,
        lambda h: [(pointer("head", "input"), h.input), (pointer("head", "low_level"), h.low_level)],
        _deeplab_bound,
        check=_low_level_not_coarser,
    ),
    "classifier": HeadDef(
        ClassifierHead,
        SelectFeature,
        lambda h: [(pointer("head", "input"), h.input)],
        _classifier_bound,
        classifies=True,
        auxiliary=lambda h: None if h.auxiliary is None else (pointer("head", "auxiliary", "input"), h.auxiliary.input),
    ),
}

# The spec's head union, discriminated by ``type``: Genotype.head is declared against it by name.
Head = Annotated[Union[tuple(d.spec for d in HEADS.values())], Field(discriminator="type")]  # noqa: UP007
spec.Head = Head
spec.Genotype.model_rebuild()
