"""The ops table: cell-edge op name -> module factory, plus the small layers the builder composes.

Edge factories take ``(channels, stride, dilation)``: DARTS cell edges keep the width, a reduction
cell strides the edges that read its inputs, and ``output_stride`` turns strides into dilation.
Ops in ``WIDENING_OPS`` also take ``out_chs`` (nas-segm templates widen by the stride), and
``STRIDE_REPEATS`` names the ops that apply their stride other than once.
The step aggregations (``AGGREGATES``) live here too: they are what a cell does with its edges.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv (no bias) -> BN: the DARTS pre-activation unit."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, padding: int = 0, dilation: int = 1
    ):
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
            nn.Conv2d(
                in_chs, out_chs, kernel_size, stride, dilation * (kernel_size - 1) // 2, dilation=dilation, bias=False
            ),
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


class StackedSepConv(nn.Sequential):
    """nas-segm's sep_conv: ``units`` x [depthwise kxk -> pointwise 1x1 -> BN -> ReLU], no leading ReLU.

    Every unit applies the stride (so stride 2 reduces x4); the first unit changes the width.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, dilation: int = 1, units: int = 2):
        padding = dilation * (kernel_size - 1) // 2
        layers = []
        for u in range(units):
            chs = in_chs if u == 0 else out_chs
            layers.append(
                nn.Sequential(
                    nn.Conv2d(chs, chs, kernel_size, stride, padding, dilation=dilation, groups=chs, bias=False),
                    nn.Conv2d(chs, out_chs, 1, bias=False),
                    nn.BatchNorm2d(out_chs),
                    nn.ReLU(inplace=False),
                )
            )
        super().__init__(*layers)


class ConvMaxPool(nn.Sequential):
    """nas-segm's max_pool_3x3: 1x1 conv -> BN (no ReLU) -> 3x3 max pool with the stride."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__(
            nn.Conv2d(in_chs, out_chs, 1, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.MaxPool2d(3, stride, padding=1),
        )


class GlobalPoolConv(nn.Module):
    """nas-segm's global_average_pool: mean -> 1x1 conv -> BN -> ReLU, spread back over the input size."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv = ConvBNAct(in_chs, out_chs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.mean(dim=(2, 3), keepdim=True))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class TileChannels(nn.Module):
    """nas-segm's skip_connect: the input repeated along channels up to the output width."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        if out_chs % in_chs:
            raise ValueError(f"skip_connect tiles channels: {out_chs} is not a multiple of {in_chs}")
        self.times = out_chs // in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.times == 1 else x.repeat(1, self.times, 1, 1)


def _skip(chs: int, stride: int, dilation: int) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(chs, chs)


def _max_pool(chs: int, stride: int, dilation: int) -> nn.Module:
    return nn.MaxPool2d(3, stride, padding=dilation, dilation=dilation)


def _avg_pool(chs: int, stride: int, dilation: int) -> nn.Module:
    return nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)


OpFactory = Callable[..., nn.Module]  # (channels, stride, dilation[, out_chs])

OPS: dict[str, OpFactory] = {
    "none": lambda c, s, d: Zero(s),
    "skip_connect": _skip,
    "max_pool_3x3": _max_pool,
    "avg_pool_3x3": _avg_pool,
    "sep_conv_3x3": lambda c, s, d, o=None: SepConv(c, o or c, 3, s, d),
    "sep_conv_5x5": lambda c, s, d, o=None: SepConv(c, o or c, 5, s, d),
    "sep_conv_7x7": lambda c, s, d, o=None: SepConv(c, o or c, 7, s, d),
    "dil_conv_3x3": lambda c, s, d, o=None: DilConv(c, o or c, 3, s, 2 * d),
    "dil_conv_5x5": lambda c, s, d, o=None: DilConv(c, o or c, 5, s, 2 * d),
    "full_dil_conv_3x3": lambda c, s, d, o=None: FullDilConv(c, o or c, 3, s, 2 * d),
    "full_dil_conv_5x5": lambda c, s, d, o=None: FullDilConv(c, o or c, 5, s, 2 * d),
    "conv_7x1_1x7": Conv7x1_1x7,
    # nas-segm (WACV 2020 template decoder, repeats = 2)
    "nas_segm_sep_conv_3x3": lambda c, s, d, o=None: StackedSepConv(c, o or c, 3, s, d),
    "nas_segm_sep_conv_5x5": lambda c, s, d, o=None: StackedSepConv(c, o or c, 5, s, d),
    "nas_segm_sep_conv_5x5_dil6": lambda c, s, d, o=None: StackedSepConv(c, o or c, 5, s, 6 * d),
    "nas_segm_max_pool_3x3": lambda c, s, d, o=None: ConvMaxPool(c, o or c, s),
    "nas_segm_global_average_pool": lambda c, s, d, o=None: GlobalPoolConv(c, o or c),
    "nas_segm_skip_connect": lambda c, s, d, o=None: TileChannels(c, o or c),
}

# Ops whose factory takes ``out_chs`` (a template edge that widens its input).
WIDENING_OPS = frozenset(name for name in OPS if name.startswith(("sep_", "dil_", "full_dil_", "nas_segm_")))

# How many times an op applies its stride, where that is not once.
STRIDE_REPEATS: dict[str, int] = {
    "nas_segm_sep_conv_3x3": 2,
    "nas_segm_sep_conv_5x5": 2,
    "nas_segm_sep_conv_5x5_dil6": 2,
    "nas_segm_global_average_pool": 0,
    "nas_segm_skip_connect": 0,
}

# The nas-segm WACV op list, in the order of its op indices.
NAS_SEGM_OPS = (
    "nas_segm_sep_conv_3x3",
    "nas_segm_sep_conv_5x5",
    "nas_segm_global_average_pool",
    "nas_segm_max_pool_3x3",
    "nas_segm_sep_conv_5x5_dil6",
    "nas_segm_skip_connect",
)

# The DARTS search space, in the order of the original PRIMITIVES list.
DARTS_PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class ConvBNAct(nn.Sequential):
    """[ReLU] -> conv -> BN -> [act]: stems, laterals and decoder convs."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        act: str | None = "relu",
        pre_act: bool = False,
        bias: bool = False,
    ):
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
                nn.Conv2d(
                    hidden,
                    hidden,
                    kernel_size,
                    stride,
                    dilation * (kernel_size - 1) // 2,
                    dilation=dilation,
                    groups=hidden,
                    bias=False,
                ),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=False),
            ),
            ConvBNAct(hidden, out_chs, 1, act=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.has_residual else y


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6}


class AlignedInputs(nn.Module):
    """Brings a step's edge outputs to one width (1x1 conv -> BN -> ReLU on the narrower ones) and to
    the size of the ``target`` edge's output (bilinear); in a DARTS cell both are no-ops."""

    def __init__(self, widths: list[int], width: int, resize: list[bool], target: int):
        super().__init__()
        self.adapts = nn.ModuleList([nn.Identity() if w == width else ConvBNAct(w, width, 1) for w in widths])
        self.resize = resize
        self.target = target

    def align(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        size = xs[self.target].shape[-2:]
        out: list[torch.Tensor] = []
        for i, adapt in enumerate(self.adapts):
            y = adapt(xs[i])
            if self.resize[i]:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            out.append(y)
        return out


class SumAggregate(AlignedInputs):
    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        ys = self.align(xs)
        out = ys[0]
        for y in ys[1:]:
            out = out + y
        return out


class ParamSumAggregate(AlignedInputs):
    """A learned per-channel weight per edge, initialised to one (nas-segm's psum)."""

    def __init__(self, widths: list[int], width: int, resize: list[bool], target: int):
        super().__init__(widths, width, resize, target)
        self.weight = nn.Parameter(torch.ones(len(widths), width))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        ys = self.align(xs)
        out = ys[0] * self.weight[0][:, None, None]
        for i in range(1, len(ys)):
            out = out + ys[i] * self.weight[i][:, None, None]
        return out


class ConcatAggregate(AlignedInputs):
    """Concatenate -> BN -> ReLU -> 1x1 conv back to the width (nas-segm's cat)."""

    def __init__(self, widths: list[int], width: int, resize: list[bool], target: int):
        super().__init__(widths, width, resize, target)
        n = len(widths) * width
        self.reduce = nn.Sequential(nn.BatchNorm2d(n), nn.ReLU(inplace=False), nn.Conv2d(n, width, 1, bias=False))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.reduce(torch.cat(self.align(xs), dim=1))


AGGREGATES: dict[str, type[AlignedInputs]] = {
    "sum": SumAggregate,
    "psum": ParamSumAggregate,
    "cat": ConcatAggregate,
}
