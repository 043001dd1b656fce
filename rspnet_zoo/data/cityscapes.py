"""Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/<split>/<city>/*_gtFine_labelIds.png``.

The 34 annotation ids map to the 19 evaluation classes (trainIds); every other id is ignored (255),
as in the official cityscapesScripts ``labels.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from rspnet_zoo.data.files import ImageMaskPairs, image_files, pair_by_name, require_dir
from rspnet_zoo.data.transforms import IGNORE_INDEX
from rspnet_zoo.spec.constants import CITYSCAPES_CLASSES

CLASS_NAMES = CITYSCAPES_CLASSES
# labelId -> trainId for the evaluated classes, in trainId order.
LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)

LUT = np.full(256, IGNORE_INDEX, dtype=np.int16)
LUT[list(LABEL_IDS)] = np.arange(len(LABEL_IDS))


def cityscapes(root: Path, split: str, transform: Callable | None = None) -> ImageMaskPairs:
    images_dir = require_dir(root / "leftImg8bit" / split, f"Cityscapes images of split '{split}'")
    masks_dir = require_dir(root / "gtFine" / split, f"Cityscapes fine annotations of split '{split}'")

    def mask_for(image: Path) -> Path:
        stem = image.name[: -len("_leftImg8bit.png")]
        return masks_dir / image.parent.name / f"{stem}_gtFine_labelIds.png"

    pairs = pair_by_name(image_files(images_dir, "*/*_leftImg8bit.png"), mask_for)
    return ImageMaskPairs(pairs, CLASS_NAMES, LUT, transform, source=str(images_dir))
