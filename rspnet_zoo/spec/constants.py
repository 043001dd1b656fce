"""Constants more than one module needs: data set class names and the input normalisation (timm's).

The normalisation is written out, not imported from timm, so that spec checking never loads timm;
tests/test_startup.py pins it to timm's values.
"""

from __future__ import annotations

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

__all__ = ["CITYSCAPES_CLASSES", "IMAGENET_DEFAULT_MEAN", "IMAGENET_DEFAULT_STD"]

# The 19 Cityscapes training classes, in train-id order.
CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic_light",
    "traffic_sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
