"""Decoders: head type -> module that turns node outputs into the pre-logits feature map.

Each decoder reads the states it needs from the list of node outputs and exposes ``num_features``;
the classifier on top belongs to the model, so ``reset_classifier`` works the same for every head.
"""
from __future__ import annotations

from typing import Callable, List

import torch
import torch.nn.functional as F
from torch import nn

from .ops import ConvBNAct
from .plan import FeaturePlan
from .spec import DeepLabV3PlusHead, FusionHead


class FusionDecoder(nn.Module):
    """Lateral 1x1 per input level, upsampled to the finest level and summed, then a 3x3 conv."""

    def __init__(self, inputs: list[FeaturePlan], spec: FusionHead):
        super().__init__()
        finest = min(f.reduction for f in inputs)
        self.states: List[int] = [f.state for f in inputs]
        self.reference = next(f.state for f in inputs if f.reduction == finest)
        self.resize: List[bool] = [f.reduction != finest for f in inputs]
        self.laterals = nn.ModuleList([ConvBNAct(f.channels, spec.channels, 1) for f in inputs])
        self.fuse = ConvBNAct(spec.channels, spec.channels, 3)
        self.num_features = spec.channels

    def forward(self, states: List[torch.Tensor]) -> torch.Tensor:
        size = states[self.reference].shape[-2:]
        out = torch.zeros(0)
        for i, lateral in enumerate(self.laterals):
            y = lateral(states[self.states[i]])
            if self.resize[i]:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            out = y if i == 0 else out + y
        return self.fuse(out)


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

    def forward(self, states: List[torch.Tensor]) -> torch.Tensor:
        low = self.low_proj(states[self.low_state])
        deep = F.interpolate(self.aspp(states[self.deep_state]), size=low.shape[-2:], mode="bilinear", align_corners=True)
        return self.refine(torch.cat([deep, low], dim=1))


HEADS: dict[str, Callable[[list[FeaturePlan], object], nn.Module]] = {
    "fusion": FusionDecoder,
    "deeplabv3plus": DeepLabV3PlusDecoder,
}
