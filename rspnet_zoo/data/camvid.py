"""CamVid in the SegNet layout: ``train/ trainannot/ val/ valannot/ test/ testannot/``.

11 classes, void (11) ignored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rspnet_zoo.data.files import ImageMaskPairs, identity_lut, image_files, pair_by_name, require_dir

CLASS_NAMES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
VOID = 11
LUT = identity_lut(len(CLASS_NAMES), void=(VOID,))


def camvid(root: Path, split: str, transform: Callable | None = None) -> ImageMaskPairs:
    images_dir = require_dir(root / split, f"CamVid images of split '{split}'")
    masks_dir = require_dir(root / f"{split}annot", f"CamVid annotations of split '{split}'")
    pairs = pair_by_name(image_files(images_dir), lambda image: masks_dir / image.name)
    return ImageMaskPairs(pairs, CLASS_NAMES, LUT, transform, source=str(images_dir))
