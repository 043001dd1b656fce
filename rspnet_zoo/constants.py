"""Constants more than one module needs: data set class names and the input normalisation (timm's)."""

from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

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
