"""Training losses for segmentation: cross-entropy, and online hard example mining (OHEM) cross-entropy.

Street scenes are dominated by a few classes (road, building, sky, vegetation). OHEM, as BiSeNet and
STDC train on Cityscapes, averages the cross-entropy over the hard pixels only: those whose probability
of the true class is below ``threshold``, and at least ``min_kept`` of them (the hardest), so a batch
that is already fitted still gives a gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rspnet_zoo.data.transforms import IGNORE_INDEX
from rspnet_zoo.errors import ZooError

LOSSES = ("ce", "ohem")
OHEM_THRESHOLD = 0.7  # BiSeNet V2's and STDC's: pixels predicted below 0.7 on their class are hard
OHEM_MIN_KEPT_SHARE = 16  # ... and at least 1/16 of the labelled pixels are kept (BiSeNet V2)


def ohem_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    threshold: float = OHEM_THRESHOLD,
    min_kept: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Mean cross-entropy of the pixels whose loss exceeds ``-log(threshold)``, or of the ``min_kept``
    largest when fewer do (default: 1/16 of the labelled pixels). Ignored pixels never count."""
    pixels = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none").flatten()
    losses = pixels[target.flatten() != ignore_index]
    if losses.numel() == 0:
        return pixels.sum()  # zero, and still part of the graph
    keep = max(1, min(losses.numel(), losses.numel() // OHEM_MIN_KEPT_SHARE if min_kept is None else min_kept))
    hard = losses[losses > -math.log(threshold)]
    if hard.numel() < keep:
        hard = losses.topk(keep).values
    return hard.mean()


def check_loss(name: str) -> str:
    if name not in LOSSES:
        raise ZooError(f"unknown --loss '{name}' (choose {', '.join(LOSSES)})")
    return name


def build_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``ce`` (cross-entropy) or ``ohem``, both ignoring label 255: ``loss(logits, masks)``."""
    if check_loss(name) == "ohem":
        return ohem_cross_entropy
    return torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
