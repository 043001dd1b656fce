"""The ops table: cell-edge op name -> ``OpDef`` (factory and properties), plus the small layers the builder composes.

Edge ops are built by ``make_op(name, channels, stride, dilation, out_chs, affine=, pre_act=, norm=)``:
DARTS cell edges keep the width, a reduction cell strides the edges that read its inputs, and
``output_stride`` turns strides into dilation. An ``OpDef`` says what the compiler and the search need
to know of an op without reading its name: whether it can widen its input (nas-segm templates widen
by the stride), how many times it applies its stride, and whether it opens with a ReLU and closes with
a BN that a caller may leave off (``pre_act=False``, ``norm=False``) to share or fold them, as the
search does. Those properties are ``rspnet_zoo.spec.ops.OP_TRAITS`` (torch-free, so specs validate without torch);
this module adds one factory per name. ``affine`` is the BN's, as in DARTS' ops.
The step aggregations (``AGGREGATES``) live here too: they are what a cell does with its edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rspnet_zoo.spec.ops import DARTS_PRIMITIVES, NAS_SEGM_OPS, OP_TRAITS, OpTraits  # noqa: F401  (re-exported beside the table)


def _conv_unit(*layers: nn.Module, pre_act: bool, norm: nn.Module | None) -> list[nn.Module]:
    """[ReLU] -> layers -> [norm]: the shape of every DARTS conv op."""
    return ([nn.ReLU(inplace=False)] if pre_act else []) + list(layers) + ([norm] if norm is not None else [])


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv (no bias) -> BN: the DARTS pre-activation unit."""

    input_convs = ("1",)  # the conv that reads the input (timm adapts it for in_chans)

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        affine: bool = True,
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_chs, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise dilated kxk -> pointwise 1x1 -> BN (DARTS dil_conv)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        dilation: int,
        affine: bool = True,
        pre_act: bool = True,
        norm: bool = True,
    ):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            *_conv_unit(
                nn.Conv2d(in_chs, in_chs, kernel_size, stride, padding, dilation=dilation, groups=in_chs, bias=False),
                nn.Conv2d(in_chs, out_chs, 1, bias=False),
                pre_act=pre_act,
                norm=nn.BatchNorm2d(out_chs, affine=affine) if norm else None,
            )
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv units, the stride on the first (DARTS sep_conv)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        dilation: int = 1,
        affine: bool = True,
        pre_act: bool = True,
        norm: bool = True,
    ):
        super().__init__(
            DilConv(in_chs, in_chs, kernel_size, stride, dilation, affine, pre_act=pre_act),
            DilConv(in_chs, out_chs, kernel_size, 1, dilation, affine, norm=norm),
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

    input_convs = ("conv_1", "conv_2")  # both read the input (timm adapts them for in_chans)

    def __init__(self, in_chs: int, out_chs: int, stride: int = 2, affine: bool = True):
        super().__init__()
        self.stride = stride
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(in_chs, out_chs // 2, 1, stride=stride, bias=False)
        self.conv_2 = nn.Conv2d(in_chs, out_chs - out_chs // 2, 1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(out_chs, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:] if self.stride == 2 else x
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class FullDilConv(nn.Sequential):
    """ReLU -> full (not separable) dilated kxk conv -> BN: Auto-DeepLab's dil_conv."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        dilation: int,
        affine: bool = True,
        pre_act: bool = True,
        norm: bool = True,
    ):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            *_conv_unit(
                nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, dilation=dilation, bias=False),
                pre_act=pre_act,
                norm=nn.BatchNorm2d(out_chs, affine=affine) if norm else None,
            )
        )


class Conv7x1_1x7(nn.Sequential):
    def __init__(self, chs: int, stride: int, dilation: int, affine: bool = True, pre_act: bool = True, norm=True):
        super().__init__(
            *_conv_unit(
                nn.Conv2d(chs, chs, (1, 7), (1, stride), padding=(0, 3 * dilation), dilation=dilation, bias=False),
                nn.Conv2d(chs, chs, (7, 1), (stride, 1), padding=(3 * dilation, 0), dilation=dilation, bias=False),
                pre_act=pre_act,
                norm=nn.BatchNorm2d(chs, affine=affine) if norm else None,
            )
        )


class StackedSepConv(nn.Sequential):
    """nas-segm's sep_conv: ``units`` x [depthwise kxk -> pointwise 1x1 -> BN -> ReLU], no leading ReLU.

    Every unit applies the stride (so stride 2 reduces x4); the first unit changes the width.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        dilation: int = 1,
        units: int = 2,
        affine: bool = True,
    ):
        padding = dilation * (kernel_size - 1) // 2
        layers = []
        for u in range(units):
            chs = in_chs if u == 0 else out_chs
            layers.append(
                nn.Sequential(
                    nn.Conv2d(chs, chs, kernel_size, stride, padding, dilation=dilation, groups=chs, bias=False),
                    nn.Conv2d(chs, out_chs, 1, bias=False),
                    nn.BatchNorm2d(out_chs, affine=affine),
                    nn.ReLU(inplace=False),
                )
            )
        super().__init__(*layers)


class ConvMaxPool(nn.Sequential):
    """nas-segm's max_pool_3x3: 1x1 conv -> BN (no ReLU) -> 3x3 max pool with the stride."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, affine: bool = True):
        super().__init__(
            nn.Conv2d(in_chs, out_chs, 1, bias=False),
            nn.BatchNorm2d(out_chs, affine=affine),
            nn.MaxPool2d(3, stride, padding=1),
        )


class GlobalPoolConv(nn.Module):
    """nas-segm's global_average_pool: mean -> 1x1 conv -> BN -> ReLU, spread back over the input size."""

    def __init__(self, in_chs: int, out_chs: int, affine: bool = True):
        super().__init__()
        self.conv = ConvBNAct(in_chs, out_chs, 1, affine=affine)

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


# (in_chs, out_chs, stride, dilation, affine, pre_act, norm) -> module; ops without a leading ReLU or a
# closing BN ignore pre_act / norm (their OpDef says so).
OpFactory = Callable[[int, int, int, int, bool, bool, bool], nn.Module]


@dataclass(frozen=True, kw_only=True)
class OpDef(OpTraits):
    """One cell-edge op: how to build it, with the properties ``OP_TRAITS`` declares for its name."""

    factory: OpFactory

    def __call__(
        self,
        channels: int,
        stride: int,
        dilation: int,
        out_chs: int | None = None,
        *,
        affine: bool = True,
        pre_act: bool = True,
        norm: bool = True,
    ) -> nn.Module:
        if out_chs is not None and out_chs != channels and not self.widens:
            raise ValueError(f"this op keeps its width: it cannot go from {channels} to {out_chs} channels")
        return self.factory(channels, out_chs or channels, stride, dilation, affine, pre_act, norm)


def _darts_conv(cls: type[nn.Module], kernel: int, dilation: int) -> OpFactory:
    return lambda c, o, s, d, affine, pre_act, norm: cls(c, o, kernel, s, dilation * d, affine, pre_act, norm)


def _nas_segm_sep(kernel: int, dilation: int) -> OpFactory:
    return lambda c, o, s, d, affine, *_: StackedSepConv(c, o, kernel, s, dilation * d, affine=affine)


def _skip(c: int, o: int, s: int, d: int, affine: bool, *_: bool) -> nn.Module:
    return nn.Identity() if s == 1 else FactorizedReduce(c, c, affine=affine)


FACTORIES: dict[str, OpFactory] = {
    "none": lambda c, o, s, *_: Zero(s),
    "skip_connect": _skip,
    "max_pool_3x3": lambda c, o, s, d, *_: nn.MaxPool2d(3, s, padding=d, dilation=d),
    "avg_pool_3x3": lambda c, o, s, *_: nn.AvgPool2d(3, s, padding=1, count_include_pad=False),
    "sep_conv_3x3": _darts_conv(SepConv, 3, 1),
    "sep_conv_5x5": _darts_conv(SepConv, 5, 1),
    "sep_conv_7x7": _darts_conv(SepConv, 7, 1),
    "dil_conv_3x3": _darts_conv(DilConv, 3, 2),
    "dil_conv_5x5": _darts_conv(DilConv, 5, 2),
    "full_dil_conv_3x3": _darts_conv(FullDilConv, 3, 2),
    "full_dil_conv_5x5": _darts_conv(FullDilConv, 5, 2),
    "conv_7x1_1x7": lambda c, o, s, d, affine, pre_act, norm: Conv7x1_1x7(c, s, d, affine, pre_act, norm),
    # nas-segm (WACV 2020 template decoder, repeats = 2)
    "nas_segm_sep_conv_3x3": _nas_segm_sep(3, 1),
    "nas_segm_sep_conv_5x5": _nas_segm_sep(5, 1),
    "nas_segm_sep_conv_5x5_dil6": _nas_segm_sep(5, 6),
    "nas_segm_max_pool_3x3": lambda c, o, s, d, affine, *_: ConvMaxPool(c, o, s, affine=affine),
    "nas_segm_global_average_pool": lambda c, o, s, d, affine, *_: GlobalPoolConv(c, o, affine=affine),
    "nas_segm_skip_connect": lambda c, o, *_: TileChannels(c, o),
}

if FACTORIES.keys() != OP_TRAITS.keys():
    raise ImportError(f"ops without both a factory and traits: {sorted(FACTORIES.keys() ^ OP_TRAITS.keys())}")
OPS: dict[str, OpDef] = {name: OpDef(factory=FACTORIES[name], **vars(OP_TRAITS[name])) for name in OP_TRAITS}


def make_op(
    name: str,
    channels: int,
    stride: int,
    dilation: int,
    out_chs: int | None = None,
    *,
    affine: bool = True,
    pre_act: bool = True,
    norm: bool = True,
) -> nn.Module:
    """The edge op ``name`` of the table (a KeyError names an op the table lacks)."""
    return OPS[name](channels, stride, dilation, out_chs, affine=affine, pre_act=pre_act, norm=norm)


class ConvBNAct(nn.Sequential):
    """[ReLU] -> conv -> BN -> [act]: stems, laterals and decoder convs."""

    @staticmethod
    def input_convs_of(pre_act: bool) -> tuple[str, ...]:
        """The conv that reads the input: after the ReLU, when there is one."""
        return ("1",) if pre_act else ("0",)

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int | tuple[int, int] = 1,
        act: str | None = "relu",
        pre_act: bool = False,
        bias: bool = False,
        affine: bool = True,
        groups: int = 1,
    ):
        layers: list[nn.Module] = [nn.ReLU(inplace=False)] if pre_act else []
        dilation = (dilation, dilation) if isinstance(dilation, int) else dilation
        padding = tuple(d * (kernel_size - 1) // 2 for d in dilation)
        layers += [
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=bias),
            nn.BatchNorm2d(out_chs, affine=affine),
        ]
        if act is not None:
            layers.append(ACTIVATIONS[act]())
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNet-v2 block; the 1x1 expand conv is kept even at expand ratio 1 (nas-segm's encoder)."""

    input_convs = ("conv.0.0",)  # the expand conv reads the input

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
