"""The ops table: cell-edge op name -> module factory, plus the small layers the builder composes.

Edge factories take ``(channels, stride, dilation)``: cell edges keep the width, a reduction cell
strides the edges that read its inputs, and ``output_stride`` turns strides into dilation.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv (no bias) -> BN: the DARTS pre-activation unit."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, padding: int = 0, dilation: int = 1):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_chs),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise dilated kxk -> pointwise 1x1 -> BN (DARTS dil_conv)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, dilation: int):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_chs, in_chs, kernel_size, stride, padding, dilation=dilation, groups=in_chs, bias=False),
            nn.Conv2d(in_chs, out_chs, 1, bias=False),
            nn.BatchNorm2d(out_chs),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv units, the stride on the first (DARTS sep_conv)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, dilation: int = 1):
        super().__init__(
            DilConv(in_chs, in_chs, kernel_size, stride, dilation),
            DilConv(in_chs, out_chs, kernel_size, 1, dilation),
        )


class Zero(nn.Module):
    """The 'none' op: zeros at the edge's output resolution."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Two 1x1 stride-2 convs, the second offset by one pixel, concatenated -> BN.

    The input is padded by one row and column so odd sizes give ceil(d/2) in both halves; on even sizes
    the padding is never read, which keeps it identical to DARTS. With stride 1 (past output_stride)
    the offset is dropped and the parameters stay the same.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 2):
        super().__init__()
        self.stride = stride
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(in_chs, out_chs // 2, 1, stride=stride, bias=False)
        self.conv_2 = nn.Conv2d(in_chs, out_chs - out_chs // 2, 1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:] if self.stride == 2 else x
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class FullDilConv(nn.Sequential):
    """ReLU -> full (not separable) dilated kxk conv -> BN: Auto-DeepLab's dil_conv."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, dilation: int):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, dilation * (kernel_size - 1) // 2, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_chs),
        )


class Conv7x1_1x7(nn.Sequential):
    def __init__(self, chs: int, stride: int, dilation: int):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(chs, chs, (1, 7), stride=(1, stride), padding=(0, 3 * dilation), dilation=dilation, bias=False),
            nn.Conv2d(chs, chs, (7, 1), stride=(stride, 1), padding=(3 * dilation, 0), dilation=dilation, bias=False),
            nn.BatchNorm2d(chs),
        )


def _skip(chs: int, stride: int, dilation: int) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(chs, chs)


def _max_pool(chs: int, stride: int, dilation: int) -> nn.Module:
    return nn.MaxPool2d(3, stride, padding=dilation, dilation=dilation)


def _avg_pool(chs: int, stride: int, dilation: int) -> nn.Module:
    return nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)


OpFactory = Callable[[int, int, int], nn.Module]

OPS: dict[str, OpFactory] = {
    "none": lambda c, s, d: Zero(s),
    "skip_connect": _skip,
    "max_pool_3x3": _max_pool,
    "avg_pool_3x3": _avg_pool,
    "sep_conv_3x3": lambda c, s, d: SepConv(c, c, 3, s, d),
    "sep_conv_5x5": lambda c, s, d: SepConv(c, c, 5, s, d),
    "sep_conv_7x7": lambda c, s, d: SepConv(c, c, 7, s, d),
    "dil_conv_3x3": lambda c, s, d: DilConv(c, c, 3, s, 2 * d),
    "dil_conv_5x5": lambda c, s, d: DilConv(c, c, 5, s, 2 * d),
    "full_dil_conv_3x3": lambda c, s, d: FullDilConv(c, c, 3, s, 2 * d),
    "full_dil_conv_5x5": lambda c, s, d: FullDilConv(c, c, 5, s, 2 * d),
    "conv_7x1_1x7": Conv7x1_1x7,
}

# The DARTS search space, in the order of the original PRIMITIVES list.
DARTS_PRIMITIVES = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)


class ConvBNAct(nn.Sequential):
    """[ReLU] -> conv -> BN -> [act]: stems, laterals and decoder convs."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, dilation: int = 1,
                 act: str | None = "relu", pre_act: bool = False, bias: bool = False):
        layers: list[nn.Module] = [nn.ReLU(inplace=False)] if pre_act else []
        padding = dilation * (kernel_size - 1) // 2
        layers += [
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, dilation=dilation, bias=bias),
            nn.BatchNorm2d(out_chs),
        ]
        if act is not None:
            layers.append(ACTIVATIONS[act]())
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNet-v2 block; the 1x1 expand conv is kept even at expand ratio 1 (nas-segm's encoder)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, dilation: int, expand_ratio: int):
        super().__init__()
        hidden = in_chs * expand_ratio
        self.has_residual = stride == 1 and in_chs == out_chs
        self.conv = nn.Sequential(
            ConvBNAct(in_chs, hidden, 1, act="relu6"),
            nn.Sequential(
                nn.Conv2d(hidden, hidden, kernel_size, stride, dilation * (kernel_size - 1) // 2,
                          dilation=dilation, groups=hidden, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=False),
            ),
            ConvBNAct(hidden, out_chs, 1, act=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.has_residual else y


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6}
