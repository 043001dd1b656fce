"""The cell-edge ops by name and what they do to a tensor's shape: what specs and search settings are
checked against without torch. ``rspnet_zoo.nn.ops`` builds its factory table on these properties, one
entry per name here."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class OpTraits:
    """What the compiler and the search may assume about an op without reading its name or building it."""

    widens: bool = False  # takes an out_chs other than its input's (a template edge that widens)
    stride_repeats: int = 1  # how many times it applies its stride (nas-segm's stacked convs: 2; pooling: 0)
    pre_act: bool = False  # opens with a ReLU that pre_act=False leaves off
    norm: bool = False  # closes with a BN that norm=False leaves off


_DARTS_CONV = OpTraits(widens=True, pre_act=True, norm=True)
_NAS_SEGM_SEP = OpTraits(widens=True, stride_repeats=2)

OP_TRAITS: dict[str, OpTraits] = {
    "none": OpTraits(),
    "skip_connect": OpTraits(),
    "max_pool_3x3": OpTraits(),
    "avg_pool_3x3": OpTraits(),
    "sep_conv_3x3": _DARTS_CONV,
    "sep_conv_5x5": _DARTS_CONV,
    "sep_conv_7x7": _DARTS_CONV,
    "dil_conv_3x3": _DARTS_CONV,
    "dil_conv_5x5": _DARTS_CONV,
    "full_dil_conv_3x3": _DARTS_CONV,
    "full_dil_conv_5x5": _DARTS_CONV,
    "conv_7x1_1x7": OpTraits(pre_act=True, norm=True),
    # nas-segm (WACV 2020 template decoder, repeats = 2)
    "nas_segm_sep_conv_3x3": _NAS_SEGM_SEP,
    "nas_segm_sep_conv_5x5": _NAS_SEGM_SEP,
    "nas_segm_sep_conv_5x5_dil6": _NAS_SEGM_SEP,
    "nas_segm_max_pool_3x3": OpTraits(widens=True),
    "nas_segm_global_average_pool": OpTraits(widens=True, stride_repeats=0),
    "nas_segm_skip_connect": OpTraits(widens=True, stride_repeats=0),
}
