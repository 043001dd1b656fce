"""Published genotypes and figures the import and fidelity tests hold the zoo to, each with its source.

Every count was read from the original code at the commit named (built with torch 2.13.0+cpu, summed
per module group) and recomputed by hand from the published rules; the two agree exactly. The genotypes
are the published data, verbatim. A "parameter" is any trainable tensor (BN running statistics are buffers).
"""

from __future__ import annotations

# --- Genotypes, in their original encodings ---

# DARTS (Liu et al., ICLR 2019, arXiv 1806.09055): quark0/darts@f276dd3, cnn/genotypes.py DARTS_V1 / DARTS_V2
DARTS_V1 = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
)
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
# PC-DARTS (Xu et al., ICLR 2020, arXiv 1907.05737): yuhuixu1993/PC-DARTS@b74702f, genotypes.py
PC_DARTS_CIFAR = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), "
    "('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], normal_concat=range(2, 6), "
    "reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], reduce_concat=range(2, 6))"
)
PC_DARTS_IMAGE = (
    "Genotype(normal=[('skip_connect', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 0), ('skip_connect', 1), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), "
    "reduce=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_5x5', 2), ('max_pool_3x3', 1), ('sep_conv_3x3', 2), "
    "('sep_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 3)], reduce_concat=range(2, 6))"
)
# Auto-DeepLab (Liu et al., CVPR 2019, arXiv 1901.02985): NoamRosenberg/autodeeplab@a5b5710, the decoded
# network path (levels) and cell ([edge_index, op_index] rows)
AUTODEEPLAB_PATH = "0,0,0,1,2,1,2,2,3,3,2,1"
AUTODEEPLAB_CELL = "[[0,7],[1,4],[2,4],[3,6],[5,4],[8,4],[11,5],[13,5],[19,7],[18,5]]"
# nas-segm (Nekrasov et al., WACV 2020, template-based search): DrSleep/nas-segm-pytorch@5de0c5c,
# examples/inference/WACV-CS-segm.ipynb, arch0 / arch1
NAS_SEGM_ARCH0 = (
    "[[[3, 0, 1], [4, 1, 1], [3, 1, 1]], [[0, 1, 0, 0, 1], [2, 1, 2, 1, 0], [3, 1, 1, 1, 0], [1, 1, 2, 0, 0], "
    "[3, 0, 2, 0, 0], [5, 3, 2, 1, 0], [0, 5, 0, 1, 0]]]"
)
NAS_SEGM_ARCH1 = (
    "[[[1, 1, 0], [1, 3, 0], [3, 4, 0]], [[1, 1, 0, 0, 0], [0, 1, 1, 1, 1], [3, 1, 2, 3, 0], [3, 0, 2, 2, 0], "
    "[0, 1, 2, 0, 0], [2, 1, 1, 3, 0], [4, 0, 2, 2, 0]]]"
)
# DPC (Chen et al., NeurIPS 2018, arXiv 1809.04184): tensorflow/models
# research/deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json, verbatim
DPC_CITYSCAPES = (
    '[{"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1}, {"kernel": 3, "rate": [18, 15], "op": "conv", '
    '"input": 0}, {"kernel": 3, "rate": [6, 3], "op": "conv", "input": 1}, {"kernel": 3, "rate": [1, 1], "op": '
    '"conv", "input": 0}, {"kernel": 3, "rate": [6, 21], "op": "conv", "input": 0}]'
)

# --- Parameter counts ---

# DARTS / PC-DARTS evaluation networks, spec -> (without the auxiliary head, with it):
# quark0/darts@f276dd3 cnn/model.py (NetworkCIFAR C=36 20 cells, NetworkImageNet C=48 14 cells) with the
# genotypes above, and yuhuixu1993/PC-DARTS@b74702f model.py
DARTS_COUNTS = {
    "darts_v1_cifar": (3_169_414, 3_645_840),
    "darts_v2_cifar": (3_349_342, 3_825_768),
    "pc_darts_cifar": (3_634_678, 4_111_104),
    "darts_v1_imagenet": (4_510_432, 5_771_208),
    "darts_v2_imagenet": (4_718_752, 5_979_528),
    "pc_darts_imagenet": (5_342_464, 6_603_240),
}
# Auto-DeepLab-S/M/L (F = 20/32/48, 19 classes, ASPP + DeepLabv3+ decoder): NoamRosenberg/autodeeplab@a5b5710
AUTODEEPLAB_COUNTS = {"autodeeplab_s": 10_147_683, "autodeeplab_m": 21_622_707, "autodeeplab_l": 44_424_947}
# nas-segm arch0/arch1 (19 classes): DrSleep/nas-segm-pytorch@5de0c5c src/
NAS_SEGM_COUNTS = {"nas_segm_arch0": 280_147, "nas_segm_arch1": 268_235}
# per spec: parameters of decoder blocks 0..6 (all repeats) and of the head's 1x1 conv (same source)
NAS_SEGM_BLOCKS = {
    "nas_segm_arch0": ([20_160, 41_984, 52_096, 7_040, 16_784, 47_680, 12_400], 14_464),
    "nas_segm_arch1": ([7_616, 21_256, 57_344, 38_528, 5_296, 19_712, 38_528], 12_416),
}
# the MobileNet-v2 encoder stages both archs use, and the final classifier conv (same source)
NAS_SEGM_ENCODER = 56_576
NAS_SEGM_CLASSIFIER = 10_963
# DPC on Xception-71, 19 classes, output stride 16 (tensorflow/models research/deeplab: core/xception.py
# xception_71, core/dense_prediction_cell.py, model.py's decoder and logits). Not run (TensorFlow 1): derived by
# hand from those layer rules, the encoder from timm's xception71, whose layers are xception_71's at output
# stride 16; tests/test_fidelity_dpc.py writes the derivation out, part by part.
DPC_COUNTS = {"dpc_xception71_cityscapes": 41_608_523}
