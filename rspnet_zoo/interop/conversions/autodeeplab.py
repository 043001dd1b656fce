"""Auto-DeepLab (NoamRosenberg/autodeeplab a5b5710, modeling/deeplab.py with the 'autodeeplab' backbone).

``backbone.cells.<i>`` is our node ``cell<i>``, registered before the stems. ``_ops.<k>`` follows
the cell's rows, which is how our spec orders a step's edges (the importer keeps row order and pairs
it with the inputs as a5b5710 applies them). The decoder registers its low-level projection twice
(``feature_projection`` is ``conv_feature`` + ``bn1``): an alias, written once by safetensors.
"""

from __future__ import annotations

from rspnet_zoo.interop.conversions import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Alias,
    Family,
    Layout,
    Rename,
    flat_edges,
    node_index,
    renames,
    require,
)
from rspnet_zoo.spec.models import Genotype

VERSION = "autodeeplab-1"
ORIGIN = "NoamRosenberg/autodeeplab@a5b5710"

SEP_CONV = (("op.1", "0.1"), ("op.2", "0.2"), ("op.3", "0.3"), ("op.5", "1.1"), ("op.6", "1.2"), ("op.7", "1.3"))
FULL_DIL_CONV = (("op.1", "1"), ("op.2", "2"))
OPS = {
    "sep_conv_3x3": SEP_CONV,
    "sep_conv_5x5": SEP_CONV,
    "full_dil_conv_3x3": FULL_DIL_CONV,
    "full_dil_conv_5x5": FULL_DIL_CONV,
}
RELU_CONV_BN = (("op.1", "1"), ("op.2", "2"))
STEM = (("0", "layer.0"), ("1", "layer.1"))
HEAD = (
    ("aspp.aspp1.atrous_conv", "decoder.aspp.branches.0.0"),
    ("aspp.aspp1.bn", "decoder.aspp.branches.0.1"),
    ("aspp.aspp2.atrous_conv", "decoder.aspp.branches.1.0"),
    ("aspp.aspp2.bn", "decoder.aspp.branches.1.1"),
    ("aspp.aspp3.atrous_conv", "decoder.aspp.branches.2.0"),
    ("aspp.aspp3.bn", "decoder.aspp.branches.2.1"),
    ("aspp.aspp4.atrous_conv", "decoder.aspp.branches.3.0"),
    ("aspp.aspp4.bn", "decoder.aspp.branches.3.1"),
    ("aspp.global_avg_pool.1", "decoder.aspp.pool.1.0"),
    ("aspp.global_avg_pool.2", "decoder.aspp.pool.1.1"),
    ("aspp.conv1", "decoder.aspp.project.0.0"),
    ("aspp.bn1", "decoder.aspp.project.0.1"),
    ("decoder.conv_feature", "decoder.low_proj.0"),
    ("decoder.bn1", "decoder.low_proj.1"),
)
ALIASES = (("decoder.feature_projection.0", "decoder.conv_feature"), ("decoder.feature_projection.1", "decoder.bn1"))
DECODER = (
    ("decoder.conv1.0", "decoder.refine.0.0"),
    ("decoder.conv1.1", "decoder.refine.0.1"),
    ("decoder.conv2.0", "decoder.refine.2.0"),
    ("decoder.conv2.1", "decoder.refine.2.1"),
    ("decoder.last_linear", "classifier"),
)


def layout(genotype: Genotype, aux_head: bool = False) -> Layout:
    index = node_index(genotype)
    entries: list = []
    for i in range(sum(n.cell is not None for n in genotype.network.nodes)):
        n = require(index, f"cell{i}", genotype, "Auto-DeepLab")
        cell = f"backbone.cells.{i}"
        entries += renames(f"{cell}.pre_preprocess", f"nodes.{n}.inputs.0.paths.0.proj", RELU_CONV_BN)
        entries += renames(f"{cell}.preprocess", f"nodes.{n}.inputs.1.paths.0.proj", RELU_CONV_BN)
        for k, op in enumerate(flat_edges(genotype, genotype.network.nodes[n].cell)):
            entries += renames(f"{cell}._ops.{k}", f"nodes.{n}.body.ops.{k}", OPS.get(op, ()))
    for stem in ("stem0", "stem1", "stem2"):
        entries += renames(f"backbone.{stem}", f"nodes.{require(index, stem, genotype, 'Auto-DeepLab')}", STEM)
    entries += [Rename(ref, ours) for ref, ours in HEAD]
    entries += [Alias(ref, same_as) for ref, same_as in ALIASES]
    entries += [Rename(ref, ours) for ref, ours in DECODER]
    return Layout(
        entries,
        wrapper="state_dict",
        origin=ORIGIN,
        cfg=dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=1.0),
        notes=(
            "Inputs: RGB in [0, 1] normalised with the ImageNet mean/std, no crop; logits at the input resolution.",
            "Sizes of the form 32k+1 (513, 769, 1025x2049) keep the reference's cell sizes exact.",
        ),
    )


FAMILY = Family("autodeeplab", VERSION, layout)
