"""The genotype spec: pydantic models that are the one in-memory form of a searched architecture.

Bounds here are the single source of truth: the JSON Schema in ``schemas/`` is generated from these
models, so a hostile document is refused by the schema before anything is allocated.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from rspnet_zoo.names import MAX_NAME, NAME_PATTERN, TAG_PATTERN
from rspnet_zoo.spec.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

FORMAT_VERSION = 1

MAX_CHANNELS = 4096
MAX_NODES = 512
MAX_CELL_STEPS = 16
MAX_EDGES = 16
MAX_PATHS = 16
MAX_REDUCTION = 64
MAX_CLASSES = 100_000
MAX_IN_CHANS = 16
MAX_ENCODERS = 8
MAX_LEVELS = 16
MAX_KWARGS = 32

Identifier = Annotated[str, Field(pattern=NAME_PATTERN, max_length=MAX_NAME)]
Channels = Annotated[int, Field(ge=1, le=MAX_CHANNELS)]
Reduction = Annotated[int, Field(ge=1, le=MAX_REDUCTION)]
# Normalisation: a NaN, infinite or zero std turns every input into NaN (and config.json into non-JSON).
Mean = Annotated[float, Field(allow_inf_nan=False)]
Std = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Provenance(Strict):
    """How a spec was made: enough to rerun it and to trace it to its parent."""

    searcher: str = "hand-designed"
    stage: str | None = None
    seed: int | None = None
    dataset: str | None = None
    budget: str | None = None
    epochs: int | None = None
    wall_time_s: float | None = None
    tool_version: str | None = None
    parent_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    command: str | None = None
    notes: str | None = None


class Edge(Strict):
    """One incoming edge of a cell step: an op applied to an earlier state of the cell."""

    input: Annotated[int, Field(ge=0, le=MAX_CELL_STEPS + 1)]
    op: Annotated[str, Field(max_length=64)]


class CellStep(Strict):
    """An intermediate node of a cell: its incoming edges, aggregated.

    Edge outputs of different widths are first brought to the widest by a 1x1 conv -> BN -> ReLU,
    and outputs of different sizes to one size (the node's ``template.resize``); in a DARTS cell
    neither happens.
    """

    edges: Annotated[list[Edge], Field(min_length=1, max_length=MAX_EDGES)]
    aggregate: Literal["sum", "psum", "cat"] = Field(
        "sum",
        description="sum; psum: a learned per-channel weight per edge (nas-segm); "
        "cat: concat -> BN -> ReLU -> 1x1 conv back to the width (nas-segm)",
    )


class Cell(Strict):
    """A DARTS-style DAG. States 0..num_inputs-1 are the inputs, then one state per step."""

    num_inputs: Annotated[int, Field(ge=1, le=2)] = 2
    reduction: bool = Field(False, description="edges that read an input state have stride 2")
    steps: Annotated[list[CellStep], Field(min_length=1, max_length=MAX_CELL_STEPS)]
    concat: Annotated[
        list[Annotated[int, Field(ge=0, le=MAX_CELL_STEPS + 1)]], Field(min_length=1, max_length=MAX_CELL_STEPS + 2)
    ]


class Path(Strict):
    """A reference to an earlier node's output; ``input`` is the image."""

    node: Identifier
    weight: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        None, description="path-attention weight kept by the path search (fuse='attention')"
    )
    via: Annotated[list[Reduction], Field(min_length=1, max_length=4)] | None = Field(
        None,
        description="bilinear paths: reductions the path is resampled through, in order, before the "
        "node's own (Auto-DeepLab's h_pp keeps the previous cell's resize)",
    )


class InputSlot(Strict):
    """One input state of a node: several paths resampled to the node's resolution and fused."""

    paths: Annotated[list[Path], Field(min_length=1, max_length=MAX_PATHS)]
    fuse: Literal["sum", "attention"] = "sum"


class Partial(Strict):
    """RSP: only ``ratio`` of the channels go through the cell, the rest bypass; applied ``depth`` times."""

    ratio: Annotated[float, Field(gt=0.0, lt=1.0)]
    depth: Annotated[int, Field(ge=1, le=4)] = 1


class Template(Strict):
    """nas-segm template mechanics: the cell reads its input paths as they are (no projection to C).

    Every edge that reads an input applies ``stride`` (an op may apply it more than once: nas-segm's
    stacked separable convs do) and, with ``widen``, multiplies its input's width by it. A repeated
    block is one node per repeat, each reading the previous one's second input and output.
    """

    stride: Annotated[int, Field(ge=1, le=8)] = 1
    widen: bool = Field(
        False, description="edges reading an input output stride x its channels (a block's first repeat)"
    )
    resize: Literal["smaller", "larger"] = Field(
        "larger", description="edge outputs of different sizes are resized to the smaller or the larger one"
    )


class LayerArgs(Strict):
    kernel: Annotated[int, Field(ge=1, le=11)] = 3
    act: Literal["relu", "relu6"] | None = "relu"
    pre_act: bool = Field(False, description="ReLU before the conv (DARTS ImageNet stem1)")
    bias: bool = False
    expand_ratio: Annotated[int, Field(ge=1, le=8)] = 1


# A timm keyword argument's value: a JSON scalar (what a model's constructor flags and rates are).
KwargValue = bool | Annotated[int, Field(ge=-(2**31), le=2**31)] | float | Annotated[str, Field(max_length=256)] | None


class Encoder(Strict):
    """A timm architecture whose feature levels the network reads (``features_only``); one module per
    encoder, however many level nodes read it."""

    model: Identifier = Field(description="a name timm.list_models() knows, e.g. 'mobilenetv3_large_100'")
    kwargs: Annotated[dict[Identifier, KwargValue], Field(max_length=MAX_KWARGS)] = Field(
        {}, description="JSON scalars passed to timm.create_model (e.g. output_stride, drop_path_rate)"
    )
    pretrained: bool | Annotated[str, Field(pattern=TAG_PATTERN)] = Field(
        False,
        description="the encoder's initial weights: false (random), true (timm's default pretrained tag) or "
        "a tag ('tf_in1k'), loaded as timm loads them",
    )


class Node(Strict):
    """A node of the network graph: a cell instance, a plain layer or a timm encoder's feature level,
    at a given reduction."""

    id: Identifier
    cell: Identifier | None = Field(None, description="name of a cell in 'cells'")
    encoder: Identifier | None = Field(
        None, description="name of an encoder in 'encoders': the node is that encoder's feature map at 'level'"
    )
    level: Annotated[int, Field(ge=0, lt=MAX_LEVELS)] | None = Field(
        None, description="encoder nodes: the index into timm's feature_info (an out_indices value)"
    )
    layer: Literal["conv", "inverted_residual"] | None = None
    args: LayerArgs | None = None
    reduction: Reduction = Field(description="output stride relative to the image (a power of two)")
    channels: Channels = Field(
        description="cell nodes: the cell's C (output is len(concat)*C); template nodes, layers and encoder "
        "levels: output channels"
    )
    inputs: Annotated[list[InputSlot], Field(min_length=1, max_length=2)]
    downsample: Literal["factorized", "bilinear"] = Field(
        "factorized", description="how a path from a finer resolution reaches a cell node"
    )
    partial: Partial | None = None
    template: Template | None = Field(None, description="cell nodes only: nas-segm template mechanics")


Dropout = Annotated[float, Field(ge=0.0, lt=1.0)]


class SegmentationHead(Strict):
    """What every dense head shares: dropout, then a kxk classifier, then the logits' way to the input size."""

    dropout: Dropout = 0.1
    classifier_kernel: Literal[1, 3] = Field(1, description="kernel of the classifier conv (nas-segm: 3)")
    upsample: Literal["bilinear", "bilinear_align_corners", "none"] = Field(
        "bilinear",
        description="how forward() brings the logits to the input size; 'none' leaves them at the "
        "decoder's resolution (nas-segm)",
    )


class FusionHead(SegmentationHead):
    """Multi-level fusion decoder: lateral 1x1 per input, upsample to the finest, sum, 3x3 conv."""

    type: Literal["fusion"]
    inputs: Annotated[list[Identifier], Field(min_length=1, max_length=8)]
    channels: Channels = 64


class ConcatHead(SegmentationHead):
    """nas-segm's head: inputs upsampled to the finest, concatenated, ReLU -> 1x1 conv -> BN -> ReLU."""

    type: Literal["concat"]
    inputs: Annotated[list[Identifier], Field(min_length=1, max_length=MAX_PATHS)]
    channels: Channels = 64
    dropout: Dropout = 0.0


class DeepLabV3PlusHead(SegmentationHead):
    """ASPP on ``input`` and the DeepLabv3+ decoder with a low-level branch from ``low_level``."""

    type: Literal["deeplabv3plus"]
    input: Identifier
    low_level: Identifier
    aspp_channels: Channels = 256
    rates: Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(min_length=1, max_length=6)] = [12, 24, 36]
    low_level_channels: Channels = 48
    decoder_channels: Channels = 256


MAX_DPC_BRANCHES = 16
DilationRate = Annotated[int, Field(ge=1, le=64)]


class DPCBranch(Strict):
    """One branch of a dense prediction cell (DeepLab's ``op: conv``): a 1x1 conv -> BN -> ReLU, or for a
    larger kernel a split separable conv (depthwise kxk at ``rate`` -> BN -> ReLU -> pointwise 1x1 -> BN
    -> ReLU), reading the cell's input (-1) or an earlier branch's output."""

    kernel: Literal[1, 3, 5, 7]
    rate: tuple[DilationRate, DilationRate] = Field(description="(rate_h, rate_w) of the depthwise conv")
    input: Annotated[int, Field(ge=-1, le=MAX_DPC_BRANCHES - 2)] = Field(
        description="-1: the features the head reads; j: the output of branch j (an earlier branch)"
    )


class DPCHead(SegmentationHead):
    """DeepLab's dense prediction cell on ``input`` (branches, concatenated, dropout, 1x1 projection) and the
    DeepLabv3+ decoder with split separable convs and a low-level branch from ``low_level``."""

    type: Literal["dpc"]
    input: Identifier
    low_level: Identifier
    branches: Annotated[list[DPCBranch], Field(min_length=1, max_length=MAX_DPC_BRANCHES)]
    rate_multiplier: Annotated[int, Field(ge=1, le=4)] = Field(
        1, description="multiplies every rate (DeepLab's conv_rate_multiplier: 16 // output_stride)"
    )
    branch_channels: Channels = 256
    concat_dropout: Dropout = Field(0.1, description="dropout on the concatenated branches (training only)")
    projection_channels: Channels = 256
    low_level_channels: Channels = 48
    decoder_channels: Channels = 256
    dropout: Dropout = 0.0
    upsample: Literal["bilinear", "bilinear_align_corners", "none"] = Field(
        "bilinear_align_corners", description="DeepLab resizes the logits with align_corners=True"
    )


class LRASPPHead(SegmentationHead):
    """Lite R-ASPP (MobileNetV3's head, as torchvision's ``LRASPPHead``): ``input`` through 1x1 conv -> BN -> ReLU,
    gated by a sigmoid of its globally pooled 1x1 conv, upsampled onto ``low_level``; the classifier reads both,
    concatenated, which is the sum of LRASPP's two classifiers (their biases add)."""

    type: Literal["lraspp"]
    input: Identifier
    low_level: Identifier
    channels: Channels = Field(128, description="inter_channels: the width of the gated branch")
    dropout: Dropout = 0.0


class AuxiliaryHead(Strict):
    """DARTS's auxiliary classifier, built only on request and used in training only:
    ReLU -> avg pool (no padding) -> 1x1 conv -> BN -> ReLU -> 2x2 conv -> [BN] -> ReLU -> linear."""

    input: Identifier
    pool_kernel: Annotated[int, Field(ge=1, le=16)] = 5
    pool_stride: Annotated[int, Field(ge=1, le=16)] = 3
    channels: Channels = 128
    hidden: Channels = 768
    hidden_norm: bool = Field(True, description="BN after the 2x2 conv (DARTS leaves it out on ImageNet)")


class ClassifierHead(Strict):
    """Image classification: global pool of ``input`` -> dropout -> linear; logits are (B, classes)."""

    type: Literal["classifier"]
    input: Identifier
    pool: Literal["avg", "max", "avgmax"] = "avg"
    dropout: Dropout = 0.0
    auxiliary: AuxiliaryHead | None = None


# The head union, discriminated by ``type``; tests/test_tables.py checks it equals the heads table's models.
Head = Annotated[
    FusionHead | ConcatHead | DeepLabV3PlusHead | DPCHead | LRASPPHead | ClassifierHead, Field(discriminator="type")
]


class Network(Strict):
    nodes: Annotated[list[Node], Field(min_length=1, max_length=MAX_NODES)]


class Defaults(Strict):
    num_classes: Annotated[int, Field(ge=1, le=MAX_CLASSES)]
    input_size: tuple[
        Annotated[int, Field(ge=1, le=MAX_IN_CHANS)],
        Annotated[int, Field(ge=1, le=8192)],
        Annotated[int, Field(ge=1, le=8192)],
    ] = (3, 512, 1024)
    mean: tuple[Mean, ...] = IMAGENET_DEFAULT_MEAN
    std: tuple[Std, ...] = IMAGENET_DEFAULT_STD
    class_names: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=MAX_CLASSES)] | None = None


class Genotype(Strict):
    """One whole network: identity, cells, network graph, head and defaults."""

    format_version: Literal[1]
    name: Identifier
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = "1.0.0"
    description: Annotated[str, Field(max_length=4000)] = ""
    provenance: Provenance = Provenance()
    cells: Annotated[dict[Identifier, Cell], Field(max_length=64)] = {}
    encoders: Annotated[dict[Identifier, Encoder], Field(max_length=MAX_ENCODERS)] = {}
    network: Network
    head: Head
    defaults: Defaults
