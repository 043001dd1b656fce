"""nas-segm WACV 2020 (DrSleep/nas-segm-pytorch 5de0c5c: src/ and the Cityscapes inference notebook).

The encoder's ``layer<s>.<i>`` is our node ``layer<s>_<i>`` (``layer<s>`` when the stage has one
block). Block j of the decoder unrolls into our nodes ``block<j>_r0 .. block<j>``, one per repeat r;
the reference keeps repeat r's op_a, op_b and aggregation at ``_ops.<j>.<3r>``, ``<3r+1>``, ``<3r+2>``.
The psum vectors ``a`` and ``b`` are the two rows of our aggregation weight.
"""

from __future__ import annotations

import re

from rspnet_zoo.interop.conversions import IMAGENET_MEAN, IMAGENET_STD, Family, Layout, Rename, Row, flat_edges, renames
from rspnet_zoo.spec.models import Genotype

VERSION = "nas-segm-1"
ORIGIN = "DrSleep/nas-segm-pytorch@5de0c5c"

SEP_CONV = tuple((f"op.sep_{u}.{i}", f"{u}.{i}") for u in (0, 1) for i in (0, 1, 2))
OPS = {
    "nas_segm_sep_conv_3x3": SEP_CONV,
    "nas_segm_sep_conv_5x5": SEP_CONV,
    "nas_segm_sep_conv_5x5_dil6": SEP_CONV,
    "nas_segm_max_pool_3x3": (("conv1x1.0", "0"), ("conv1x1.1", "1")),
}
# 1x1 conv + BN bringing an input to the aggregation width, per input.
ADAPT = tuple((f"adapt.conv{i}.{j}", f"adapts.{i}.{j}") for i in (0, 1) for j in (0, 1))
CAT = ADAPT + (("conv1x1.0", "reduce.0"), ("conv1x1.2", "reduce.2"))
# MobileNet-v2 blocks: expand conv + BN, depthwise conv + BN, project conv + BN.
INVERTED_RESIDUAL = (("0", "0.0"), ("1", "0.1"), ("3", "1.0"), ("4", "1.1"), ("6", "2.0"), ("7", "2.1"))
HEAD = (
    ("decoder.pre_clf.0", "decoder.fuse.1"),
    ("decoder.pre_clf.1", "decoder.fuse.2"),
    ("decoder.conv_clf", "classifier"),
)
ENCODER_ID = re.compile(r"layer(\d+)(?:_(\d+))?")
BLOCK_ID = re.compile(r"block(\d+)(?:_r(\d+))?")


def layout(genotype: Genotype, aux_head: bool = False) -> Layout:
    entries: list = []
    repeats: dict[str, int] = {}
    for n, node in enumerate(genotype.network.nodes):
        if node.cell is None and (m := ENCODER_ID.fullmatch(node.id)):
            ref = f"encoder.layer{m[1]}"
            if node.layer == "inverted_residual":
                entries += renames(f"{ref}.{m[2] or 0}.conv", f"nodes.{n}.layer.conv", INVERTED_RESIDUAL)
            else:
                entries += renames(ref, f"nodes.{n}.layer", (("0", "0"), ("1", "1")))
        elif node.cell is not None and (m := BLOCK_ID.fullmatch(node.id)):
            r = int(m[2]) if m[2] is not None else repeats.get(m[1], 0)
            repeats[m[1]] = r + 1
            ref, ours = f"decoder._ops.{m[1]}", f"nodes.{n}.body"
            for e, op in enumerate(flat_edges(genotype, node.cell)):
                entries += renames(f"{ref}.{3 * r + e}", f"{ours}.ops.{e}", OPS.get(op, ()))
            agg = f"{ref}.{3 * r + 2}"
            if genotype.cells[node.cell].steps[0].aggregate == "psum":
                entries += [Row(f"{agg}.a", f"{ours}.aggregates.0.weight", 0)]
                entries += [Row(f"{agg}.b", f"{ours}.aggregates.0.weight", 1)]
                entries += renames(agg, f"{ours}.aggregates.0", ADAPT)
            else:
                entries += renames(agg, f"{ours}.aggregates.0", CAT)
    entries += [Rename(ref, ours) for ref, ours in HEAD]
    return Layout(
        entries,
        origin=ORIGIN,
        cfg=dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=1.0),
        notes=(
            "Inputs: RGB in [0, 1] normalised with the ImageNet mean/std (the notebook's prepare_img), no crop.",
            "Logits at 1/4 of the input (ceil), as the reference returns them; the notebook resizes them "
            "to the image outside the model (cv2 INTER_CUBIC).",
        ),
    )


FAMILY = Family("nas-segm", VERSION, layout)
