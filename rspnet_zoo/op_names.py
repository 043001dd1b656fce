"""The search spaces' op lists, by name: what specs and search settings are checked against without torch."""

from __future__ import annotations

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
