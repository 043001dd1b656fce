"""The heads table: head type -> ``HeadDef``, the one registration of a head, without torch.

A definition carries the head's spec model (``rspnet_zoo.spec.models``), the nodes it reads (with their
JSON pointers), whether it classifies, checks on what it reads, and a bound on its parameters: everything a
spec is validated against. The spec's ``Head`` union lists the same models (a test holds them equal); the
lowering's head checks are derived from the table; ``rspnet_zoo.nn.heads`` adds one decoder module per type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rspnet_zoo.errors import SpecError, pointer
from rspnet_zoo.spec.features import FeaturePlan
from rspnet_zoo.spec.models import (
    ClassifierHead,
    ConcatHead,
    DeepLabV3PlusHead,
    DPCHead,
    FusionHead,
    Genotype,
    LRASPPHead,
    SegmentationHead,
    Strict,
)

Ref = tuple[str, str]  # (JSON pointer, node id)


@dataclass(frozen=True)
class HeadDef:
    """One head: spec model, the nodes it reads, and what the model does on top."""

    spec: type[Strict]
    reads: Callable[[Any], list[Ref]]  # the decoder's inputs, in the order the module takes them
    max_parameters: Callable[[list[FeaturePlan], FeaturePlan | None, Any, int], int]  # decoder + classifiers
    classifies: bool = False  # global pool -> linear, logits (B, classes); else a dense map
    auxiliary: Callable[[Any], Ref | None] = lambda spec: None  # the node an auxiliary classifier reads
    check: Callable[[Any, list[int]], None] = lambda spec, reductions: None  # nominal reductions of the reads


def _dense_classifier(head: SegmentationHead, width: int, num_classes: int) -> int:
    return head.classifier_kernel**2 * width * num_classes + num_classes


def _fusion_bound(inputs: list[FeaturePlan], aux, head: FusionHead, n: int) -> int:
    c = head.channels
    return sum(f.channels * c + 2 * c for f in inputs) + 9 * c * c + 2 * c + _dense_classifier(head, c, n)


def _concat_bound(inputs: list[FeaturePlan], aux, head: ConcatHead, n: int) -> int:
    c = head.channels
    return sum(f.channels for f in inputs) * c + 2 * c + _dense_classifier(head, c, n)


def _deeplab_bound(inputs: list[FeaturePlan], aux, head: DeepLabV3PlusHead, n: int) -> int:
    """ASPP (1x1, one 3x3 per rate, image pool, 1x1 projection), low-level 1x1, two 3x3s."""
    a, low, d, r = head.aspp_channels, head.low_level_channels, head.decoder_channels, len(head.rates)
    aspp = inputs[0].channels * a * (2 + 9 * r) + (r + 2) * a * a + 2 * a * (r + 3)
    return (
        aspp
        + inputs[1].channels * low
        + 2 * low
        + 9 * (a + low) * d
        + 9 * d * d
        + 4 * d
        + _dense_classifier(head, d, n)
    )


def _split_separable(in_chs: int, out_chs: int, kernel: int) -> int:
    """DeepLab's split separable conv: depthwise kxk -> BN, pointwise 1x1 -> BN (no biases)."""
    return kernel * kernel * in_chs + 2 * in_chs + in_chs * out_chs + 2 * out_chs


def _dpc_bound(inputs: list[FeaturePlan], aux, head: DPCHead, n: int) -> int:
    """The cell's branches and projection, the low-level 1x1, two 3x3 split separable convs: exact."""
    b, p, low, d = head.branch_channels, head.projection_channels, head.low_level_channels, head.decoder_channels
    total = 0
    for branch in head.branches:
        in_chs = inputs[0].channels if branch.input < 0 else b
        total += in_chs * b + 2 * b if branch.kernel == 1 else _split_separable(in_chs, b, branch.kernel)
    total += len(head.branches) * b * p + 2 * p
    total += inputs[1].channels * low + 2 * low
    total += _split_separable(p + low, d, 3) + _split_separable(d, d, 3)
    return total + _dense_classifier(head, d, n)


def _lraspp_bound(inputs: list[FeaturePlan], aux, head: LRASPPHead, n: int) -> int:
    """The 1x1 conv -> BN and the gate's 1x1 on the deep feature; the classifier reads the gated branch and
    the low-level feature."""
    c = head.channels
    return 2 * inputs[0].channels * c + 2 * c + _dense_classifier(head, c + inputs[1].channels, n)


def _classifier_bound(inputs: list[FeaturePlan], aux: FeaturePlan | None, head: ClassifierHead, n: int) -> int:
    total = inputs[0].channels * n + n
    if aux is not None and head.auxiliary is not None:
        a = head.auxiliary
        total += aux.channels * a.channels + 2 * a.channels + 4 * a.channels * a.hidden + 2 * a.hidden
        total += a.hidden * n + n
    return total


def _low_level_not_coarser(head: DeepLabV3PlusHead | DPCHead | LRASPPHead, reductions: list[int]) -> None:
    if reductions[1] > reductions[0]:
        coarser = f"the low-level feature must not be coarser than the {head.type} head's input"
        raise SpecError(pointer("head", "low_level"), coarser)


def _dpc_checks(head: DPCHead, reductions: list[int]) -> None:
    _low_level_not_coarser(head, reductions)
    for i, branch in enumerate(head.branches):
        if branch.input >= i:
            allowed = "only -1 (the features)" if i == 0 else f"-1 (the features) or an earlier branch, 0..{i - 1}"
            raise SpecError(
                pointer("head", "branches", i, "input"), f"branch {i} reads {branch.input}; it may read {allowed}"
            )


def _listed_inputs(head: FusionHead | ConcatHead) -> list[Ref]:
    return [(pointer("head", "inputs", i), ref) for i, ref in enumerate(head.inputs)]


def _deep_and_low_level(head: DeepLabV3PlusHead | DPCHead | LRASPPHead) -> list[Ref]:
    return [(pointer("head", "input"), head.input), (pointer("head", "low_level"), head.low_level)]


HEADS: dict[str, HeadDef] = {
    "fusion": HeadDef(FusionHead, _listed_inputs, _fusion_bound),
    "concat": HeadDef(ConcatHead, _listed_inputs, _concat_bound),
    "deeplabv3plus": HeadDef(DeepLabV3PlusHead, _deep_and_low_level, _deeplab_bound, check=_low_level_not_coarser),
    "dpc": HeadDef(DPCHead, _deep_and_low_level, _dpc_bound, check=_dpc_checks),
    "lraspp": HeadDef(LRASPPHead, _deep_and_low_level, _lraspp_bound, check=_low_level_not_coarser),
    "classifier": HeadDef(
        ClassifierHead,
        lambda h: [(pointer("head", "input"), h.input)],
        _classifier_bound,
        classifies=True,
        auxiliary=lambda h: None if h.auxiliary is None else (pointer("head", "auxiliary", "input"), h.auxiliary.input),
    ),
}


def feature_reduction(genotype: Genotype) -> int:
    """The reduction of the decoder's feature map (``forward_features``) at the default output stride:
    every decoder brings its inputs to the finest of them. A read of no node counts as the image; lowering
    reports it."""
    reductions = {node.id: node.reduction for node in genotype.network.nodes}
    return min(reductions.get(ref, 1) for _, ref in HEADS[genotype.head.type].reads(genotype.head))
