"""Data sets for training and evaluation: the embedded synthetic benchmark and the on-disk layouts.

``build_dataset`` is the one entry point. Items are ``(image float32 3xHxW normalised, mask int64 HxW)``
with 255 = ignore; every data set has ``num_classes`` and ``class_names``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rspnet_zoo.data.camvid import camvid
from rspnet_zoo.data.cityscapes import cityscapes
from rspnet_zoo.data.files import DataError, ImageMaskPairs
from rspnet_zoo.data.folder import folder
from rspnet_zoo.data.synthetic import DEFAULT_SIZE, SPLITS, SyntheticSegmentation
from rspnet_zoo.data.transforms import IGNORE_INDEX, Normalize, TrainTransform

FILE_LAYOUTS = {"cityscapes": cityscapes, "camvid": camvid, "folder": folder}
DATASETS = ("synthetic",) + tuple(FILE_LAYOUTS)


def build_dataset(
    name: str,
    split: str,
    root: Path | None = None,
    crop: tuple[int, int] | None = None,
    train: bool = False,
    seed: int = 0,
    **kwargs: Any,
) -> torch.utils.data.Dataset:
    """The ``split`` of data set ``name``; ``train=True`` adds random scale, ``crop`` and flip.

    The synthetic set is generated at ``size`` (default: ``crop``, else 128x128), ``length`` items of
    the ``seed`` stream; the file layouts read ``root``.
    """
    transform = TrainTransform(crop) if train else Normalize()
    if name == "synthetic":
        if split not in SPLITS:
            raise DataError(f"the synthetic data set has splits {', '.join(SPLITS)}, not '{split}'")
        size = kwargs.pop("size", None) or crop or DEFAULT_SIZE
        return SyntheticSegmentation(split, size=size, seed=seed, transform=transform, **kwargs)
    if name not in FILE_LAYOUTS:
        raise DataError(f"unknown data set '{name}': choose one of {', '.join(DATASETS)}")
    if kwargs:
        raise DataError(f"the {name} data set takes no options {', '.join(sorted(kwargs))}")
    if root is None:
        raise DataError(f"the {name} data set needs a root folder (--root DIR)")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (the {name} data set root)")
    return FILE_LAYOUTS[name](root, split, transform)


__all__ = [
    "DATASETS",
    "DataError",
    "IGNORE_INDEX",
    "ImageMaskPairs",
    "Normalize",
    "SyntheticSegmentation",
    "TrainTransform",
    "build_dataset",
]
