"""Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/<split>/<city>/*_gtFine_labelIds.png``.

The 34 annotation ids map to the 19 evaluation classes (trainIds); every other id is ignored (255). The
classes, their ids and colours come from the Cityscapes team's own table, ``cityscapesscripts.helpers.labels``,
when that package is installed (``pip install rspnet-zoo[cityscapes]``, which also brings the official
evaluation script); otherwise from the copy below, which tests/test_cityscapes.py checks against it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rspnet_zoo.data.files import ImageMaskPairs, image_files, pair_by_name, require_dir
from rspnet_zoo.data.transforms import IGNORE_INDEX
from rspnet_zoo.spec.constants import CITYSCAPES_CLASSES


@dataclass(frozen=True)
class EvaluatedClasses:
    """The 19 evaluated classes in trainId order: name (spaces as underscores, as zoo class names are written),
    annotation id (labelId) and colour."""

    names: tuple[str, ...]
    label_ids: tuple[int, ...]
    colours: tuple[tuple[int, int, int], ...]

    def lut(self) -> np.ndarray:
        """labelId -> trainId, 255 for every id not evaluated."""
        lut = np.full(256, IGNORE_INDEX, dtype=np.int16)
        lut[list(self.label_ids)] = np.arange(len(self.label_ids))
        return lut


CLASS_NAMES = CITYSCAPES_CLASSES
LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)  # labelId of each trainId

WRITTEN_OUT = EvaluatedClasses(
    names=CLASS_NAMES,
    label_ids=LABEL_IDS,
    colours=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
        (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
        (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
)  # fmt: skip


LUT = WRITTEN_OUT.lut()


def official_classes() -> EvaluatedClasses | None:
    """The evaluated classes from ``cityscapesscripts.helpers.labels``; None when it is not installed."""
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError:
        return None
    evaluated = sorted((label for label in labels if not label.ignoreInEval), key=lambda label: label.trainId)
    return EvaluatedClasses(
        names=tuple(label.name.replace(" ", "_") for label in evaluated),
        label_ids=tuple(label.id for label in evaluated),
        colours=tuple(tuple(label.color) for label in evaluated),
    )


@functools.cache
def cityscapes_classes() -> EvaluatedClasses:
    return official_classes() or WRITTEN_OUT


def cityscapes(root: Path, split: str, transform: Callable | None = None) -> ImageMaskPairs:
    images_dir = require_dir(root / "leftImg8bit" / split, f"Cityscapes images of split '{split}'")
    masks_dir = require_dir(root / "gtFine" / split, f"Cityscapes fine annotations of split '{split}'")

    def mask_for(image: Path) -> Path:
        stem = image.name[: -len("_leftImg8bit.png")]
        return masks_dir / image.parent.name / f"{stem}_gtFine_labelIds.png"

    classes = cityscapes_classes()
    pairs = pair_by_name(image_files(images_dir, "*/*_leftImg8bit.png"), mask_for)
    return ImageMaskPairs(pairs, classes.names, classes.lut(), transform, source=str(images_dir))
