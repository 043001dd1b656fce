"""DARTS and PC-DARTS evaluation networks (quark0/darts f276dd3 cnn/model.py; PC-DARTS b74702f, same model).

``cells.<i>`` is our node ``cell<i>``; ``_ops.<k>`` is genotype pair k, our ``body.ops.<k>`` (pools and
identities have no tensors on either side). The CIFAR file is a bare state dict, the ImageNet one
keeps it under ``'state_dict'`` (``module.`` prefixes from DataParallel are stripped on reading).
"""

from __future__ import annotations

from rspnet_zoo.interop.conversions import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Family,
    Layout,
    Rename,
    flat_edges,
    node_index,
    renames,
    require,
)
from rspnet_zoo.spec.models import Genotype

VERSION = "darts-1"
ORIGIN = "quark0/darts@f276dd3 (cnn/), yuhuixu1993/PC-DARTS@b74702f"
CIFAR_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR_STD = (0.24703233, 0.24348505, 0.26158768)

# (reference submodule, ours) inside one op: ReLU, then convs and BNs at these Sequential indices.
SEP_CONV = (("op.1", "0.1"), ("op.2", "0.2"), ("op.3", "0.3"), ("op.5", "1.1"), ("op.6", "1.2"), ("op.7", "1.3"))
DIL_CONV = (("op.1", "1"), ("op.2", "2"), ("op.3", "3"))
FACTORIZED_REDUCE = (("conv_1", "conv_1"), ("conv_2", "conv_2"), ("bn", "bn"))
RELU_CONV_BN = (("op.1", "1"), ("op.2", "2"))
# A cell input is ReLUConvBN, or FactorizedReduce after a reduction; a stride-2 skip is FactorizedReduce.
PREPROCESS = RELU_CONV_BN + FACTORIZED_REDUCE
OPS = {
    "sep_conv_3x3": SEP_CONV,
    "sep_conv_5x5": SEP_CONV,
    "dil_conv_3x3": DIL_CONV,
    "dil_conv_5x5": DIL_CONV,
    "skip_connect": FACTORIZED_REDUCE,
}
CIFAR_STEM = (("stem", "stem.0", "layer.0"), ("stem", "stem.1", "layer.1"))
IMAGENET_STEM = (
    ("stem0_0", "stem0.0", "layer.0"),
    ("stem0_0", "stem0.1", "layer.1"),
    ("stem0_1", "stem0.3", "layer.0"),
    ("stem0_1", "stem0.4", "layer.1"),
    ("stem1", "stem1.1", "layer.1"),
    ("stem1", "stem1.2", "layer.2"),
)
# ReLU, AvgPool, conv, BN, ReLU, conv, BN (CIFAR only), ReLU.
AUX_HEAD_CIFAR = (
    ("features.2", "features.2.0"),
    ("features.3", "features.2.1"),
    ("features.5", "features.3"),
    ("features.6", "features.4"),
    ("classifier", "classifier"),
)
AUX_HEAD_IMAGENET = tuple(row for row in AUX_HEAD_CIFAR if row[0] != "features.6")


def layout(genotype: Genotype, aux_head: bool) -> Layout:
    index = node_index(genotype)
    imagenet = "stem" not in index
    entries: list = []
    for node_id, ref, ours in IMAGENET_STEM if imagenet else CIFAR_STEM:
        entries.append(Rename(ref, f"nodes.{require(index, node_id, genotype, 'DARTS')}.{ours}"))
    for i in range(sum(n.cell is not None for n in genotype.network.nodes)):
        n = require(index, f"cell{i}", genotype, "DARTS")
        for slot in (0, 1):
            entries += renames(f"cells.{i}.preprocess{slot}", f"nodes.{n}.inputs.{slot}.paths.0.proj", PREPROCESS)
        for k, op in enumerate(flat_edges(genotype, genotype.network.nodes[n].cell)):
            entries += renames(f"cells.{i}._ops.{k}", f"nodes.{n}.body.ops.{k}", OPS.get(op, ()))
    if aux_head:
        entries += renames("auxiliary_head", "aux_head", AUX_HEAD_IMAGENET if imagenet else AUX_HEAD_CIFAR)
    entries.append(Rename("classifier", "classifier"))
    if imagenet:
        return Layout(
            entries,
            wrapper="state_dict",
            origin=ORIGIN,
            cfg=dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.875, interpolation="bilinear"),
            notes=(
                "Inputs: RGB in [0, 1] normalised with the ImageNet mean/std; the reference evaluates "
                "Resize(256) + CenterCrop(224) (crop_pct 0.875, bilinear).",
                "The reference pools with AvgPool2d(7), so its logits exist for 224x224 inputs only; "
                "ours pool globally and agree with it there.",
            ),
        )
    return Layout(
        entries,
        origin=ORIGIN,
        cfg=dict(mean=CIFAR_MEAN, std=CIFAR_STD, crop_pct=1.0),
        notes=("Inputs: 32x32 RGB in [0, 1] normalised with the CIFAR-10 mean/std; no resize or crop (test.py).",),
    )


FAMILY = Family("darts", VERSION, layout, aux_prefix="auxiliary_head.")
