"""Paired image/mask transforms: the training augmentation and the normalisation, on torchvision's
``transforms.v2``.

Images come in as float 3xHxW in [0, 1] and masks as int64 HxW, and leave as plain tensors of the same
kinds. Inside, they travel as ``tv_tensors.Image`` and ``tv_tensors.Mask``, so that every geometric step
moves both alike and torchvision resizes the mask by nearest neighbour only (the image bilinearly,
antialiased), pads it with the ignore label and leaves it out of the normalisation. Randomness comes from
torch's global generator, so a training run that seeds it per item (``rspnet_zoo.training.distributed``)
or saves and restores it replays the same augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from rspnet_zoo.spec.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

IGNORE_INDEX = 255
PAD_FILL = {tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE_INDEX}  # padding is unlabelled, never background


def apply_paired(pipeline: v2.Transform, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``pipeline`` applied to an (image, mask) pair of plain tensors, as ``Image`` and ``Mask``."""
    image, mask = pipeline(tv_tensors.Image(image), tv_tensors.Mask(mask))
    return image.as_subclass(torch.Tensor).contiguous(), mask.as_subclass(torch.Tensor).contiguous()


class Normalize:
    """``(image - mean) / std``; the mask passes through."""

    def __init__(self, mean: Sequence[float] = IMAGENET_DEFAULT_MEAN, std: Sequence[float] = IMAGENET_DEFAULT_STD):
        self.pipeline = v2.Normalize(list(mean), list(std))

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return apply_paired(self.pipeline, image, mask)


class RandomScale(v2.Transform):
    """Resize by a factor drawn uniformly from ``scale``, relative to each input's own size: the seed papers'
    random scale. (torchvision's ``ScaleJitter`` scales relative to one fixed target size, ``RandomResize``
    sets the short side: neither keeps the ratio to the image when image sizes vary.)"""

    def __init__(self, scale: tuple[float, float]):
        super().__init__()
        self.scale = scale

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        s = float(torch.empty(()).uniform_(*self.scale))
        return dict(size=[max(1, round(h * s)), max(1, round(w * s))])

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return v2.functional.resize(inpt, params["size"], interpolation=v2.InterpolationMode.BILINEAR)


class TrainTransform:
    """The seed papers' augmentation: random scale, a random ``crop`` (padded with the ignore label where the
    scaled image is smaller; None: the input's own size), horizontal flip with probability ``flip``, then
    ``normalize``."""

    def __init__(
        self,
        crop: tuple[int, int] | None = None,
        scale: tuple[float, float] = (0.5, 2.0),
        flip: float = 0.5,
        normalize: Normalize | None = None,
    ):
        self.crop, self.scale, self.flip = crop, scale, flip
        self.normalize = normalize or Normalize()
        self.pipeline = None if crop is None else self.pipeline_for(crop)

    def pipeline_for(self, crop: Sequence[int]) -> v2.Transform:
        return v2.Compose(
            [
                RandomScale(self.scale),
                v2.RandomCrop(list(crop), pad_if_needed=True, fill=PAD_FILL),
                v2.RandomHorizontalFlip(self.flip),
                self.normalize.pipeline,
            ]
        )

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pipeline = self.pipeline or self.pipeline_for(image.shape[-2:])  # no crop: each input's own size
        return apply_paired(pipeline, image, mask)
