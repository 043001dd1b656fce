"""The decoders: head type -> decoder module, one per entry of the torch-free heads table
(``rspnet_zoo.spec.heads``, re-exported here), which holds everything else a head is.

Each decoder reads the states it needs from the list of node outputs and exposes ``num_features``;
the classifier on top belongs to the model, so ``reset_classifier`` works the same for every head.
DARTS's auxiliary classifier is here too: it reads a node output and gives logits of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d
from torch import nn

from rspnet_zoo.nn.ops import ConvBNAct
from rspnet_zoo.spec.heads import HEADS, HeadDef  # noqa: F401  (re-exported beside the decoders)
from rspnet_zoo.spec.models import (
    AuxiliaryHead,
    ClassifierHead,
    ConcatHead,
    DeepLabV3PlusHead,
    DPCBranch,
    DPCHead,
    FusionHead,
    LRASPPHead,
)

if TYPE_CHECKING:
    from rspnet_zoo.spec.plan import FeaturePlan


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


class DeepLabDecoder(nn.Module):
    """DeepLabv3+'s decoder: a context module on the deep feature (``context``), its output upsampled onto a
    projected low-level feature (``low_proj``), concatenated after it and refined (``refine``). Subclasses
    register the three modules."""

    def __init__(self, inputs: list[FeaturePlan]):
        super().__init__()
        deep, low = inputs
        self.deep_state, self.low_state = deep.state, low.state

    def context(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        low = self.low_proj(states[self.low_state])
        deep = F.interpolate(
            self.context(states[self.deep_state]), size=low.shape[-2:], mode="bilinear", align_corners=True
        )
        return self.refine(torch.cat([deep, low], dim=1))


class DeepLabV3PlusDecoder(DeepLabDecoder):
    """ASPP on the deep feature, upsampled onto a projected low-level feature, two 3x3 convs."""

    def __init__(self, inputs: list[FeaturePlan], spec: DeepLabV3PlusHead):
        super().__init__(inputs)
        deep, low = inputs
        self.aspp = ASPP(deep.channels, spec.aspp_channels, spec.rates)
        self.low_proj = ConvBNAct(low.channels, spec.low_level_channels, 1)
        self.refine = nn.Sequential(
            ConvBNAct(spec.aspp_channels + spec.low_level_channels, spec.decoder_channels, 3),
            nn.Dropout(0.5),
            ConvBNAct(spec.decoder_channels, spec.decoder_channels, 3),
        )
        self.num_features = spec.decoder_channels

    def context(self, x: torch.Tensor) -> torch.Tensor:
        return self.aspp(x)


class SplitSeparableConv(nn.Sequential):
    """DeepLab's split separable conv: depthwise kxk (dilated) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU
    (a BN and ReLU between the two, unlike a plain separable conv)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, dilation: tuple[int, int] = (1, 1)):
        super().__init__(
            ConvBNAct(in_chs, in_chs, kernel_size, dilation=dilation, groups=in_chs),
            ConvBNAct(in_chs, out_chs, 1),
        )


def dpc_branch(branch: DPCBranch, in_chs: int, out_chs: int, rate_multiplier: int) -> nn.Module:
    """One branch of a dense prediction cell: a 1x1 conv, or a split separable conv at the scaled rate."""
    if branch.kernel == 1:
        return ConvBNAct(in_chs, out_chs, 1)
    rate_h, rate_w = branch.rate
    return SplitSeparableConv(in_chs, out_chs, branch.kernel, (rate_h * rate_multiplier, rate_w * rate_multiplier))


class DensePredictionCell(nn.Module):
    """DeepLab's dense prediction cell: branches that read the input or an earlier branch, all concatenated,
    dropout (training only), a 1x1 projection."""

    def __init__(self, in_chs: int, spec: DPCHead):
        super().__init__()
        width = spec.branch_channels
        self.sources: list[int] = [b.input for b in spec.branches]
        self.branches = nn.ModuleList(
            [dpc_branch(b, in_chs if b.input < 0 else width, width, spec.rate_multiplier) for b in spec.branches]
        )
        self.dropout = nn.Dropout(spec.concat_dropout)
        self.project = ConvBNAct(len(spec.branches) * width, spec.projection_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for i, branch in enumerate(self.branches):
            source = self.sources[i]
            outs.append(branch(x if source < 0 else outs[source]))
        return self.project(self.dropout(torch.cat(outs, dim=1)))


class DPCDecoder(DeepLabDecoder):
    """The dense prediction cell on the deep feature and DeepLab's decoder: the low-level 1x1 projection and
    two 3x3 split separable convs (DeepLab's ``decoder_use_separable_conv``)."""

    def __init__(self, inputs: list[FeaturePlan], spec: DPCHead):
        super().__init__(inputs)
        deep, low = inputs
        self.dpc = DensePredictionCell(deep.channels, spec)
        self.low_proj = ConvBNAct(low.channels, spec.low_level_channels, 1)
        self.refine = nn.Sequential(
            SplitSeparableConv(spec.projection_channels + spec.low_level_channels, spec.decoder_channels),
            SplitSeparableConv(spec.decoder_channels, spec.decoder_channels),
        )
        self.num_features = spec.decoder_channels

    def context(self, x: torch.Tensor) -> torch.Tensor:
        return self.dpc(x)


class LRASPPDecoder(nn.Module):
    """Lite R-ASPP (torchvision's ``LRASPPHead``): the deep feature through 1x1 conv -> BN -> ReLU, times a
    sigmoid gate from its global average, upsampled onto the low-level feature and concatenated with it.
    LRASPP classifies each of the two with a 1x1 conv and sums the logits: the model's classifier on the
    concatenation is that sum, in one conv (``weight = cat(high, low)``, ``bias = high + low``)."""

    def __init__(self, inputs: list[FeaturePlan], spec: LRASPPHead):
        super().__init__()
        deep, low = inputs
        self.deep_state, self.low_state = deep.state, low.state
        self.cbr = ConvBNAct(deep.channels, spec.channels, 1)
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(deep.channels, spec.channels, 1, bias=False), nn.Sigmoid()
        )
        self.num_features = spec.channels + low.channels

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        deep, low = states[self.deep_state], states[self.low_state]
        x = self.cbr(deep) * self.scale(deep)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([x, low], dim=1)


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


DECODERS: dict[str, Callable[[list[FeaturePlan], Any], nn.Module]] = {
    "fusion": FusionDecoder,
    "concat": ConcatDecoder,
    "deeplabv3plus": DeepLabV3PlusDecoder,
    "dpc": DPCDecoder,
    "lraspp": LRASPPDecoder,
    "classifier": SelectFeature,
}

if DECODERS.keys() != HEADS.keys():
    raise ImportError(f"heads without both a decoder and a definition: {sorted(DECODERS.keys() ^ HEADS.keys())}")
