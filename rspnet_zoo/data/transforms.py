"""Paired image/mask transforms on tensors: the training augmentation and the normalisation.

Images come in as float 3xHxW in [0, 1] and masks as int64 HxW; the geometry is applied to both
(bilinear for the image, nearest for the mask) and padding in the mask is the ignore label.
Randomness comes from torch's global generator, so a training run that saves and restores its RNG
state replays the same augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from rspnet_zoo.spec.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

IGNORE_INDEX = 255


class Normalize:
    """``(image - mean) / std``; the mask passes through."""

    def __init__(self, mean: Sequence[float] = IMAGENET_DEFAULT_MEAN, std: Sequence[float] = IMAGENET_DEFAULT_STD):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (image - self.mean) / self.std, mask


class TrainTransform:
    """The seed papers' augmentation: random scale, pad (ignore) and random crop, horizontal flip."""

    def __init__(
        self,
        crop: tuple[int, int] | None = None,
        scale: tuple[float, float] = (0.5, 2.0),
        flip: float = 0.5,
        normalize: Normalize | None = None,
    ):
        self.crop = crop
        self.scale = scale
        self.flip = flip
        self.normalize = normalize or Normalize()

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = image.shape[-2:]
        ch, cw = self.crop or (h, w)
        s = float(torch.empty(()).uniform_(*self.scale))
        size = (max(1, round(h * s)), max(1, round(w * s)))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
        ph, pw = max(ch - size[0], 0), max(cw - size[1], 0)
        if ph or pw:
            image = F.pad(image, (0, pw, 0, ph), value=0.0)
            mask = F.pad(mask, (0, pw, 0, ph), value=IGNORE_INDEX)
        top = int(torch.randint(0, image.shape[-2] - ch + 1, ()))
        left = int(torch.randint(0, image.shape[-1] - cw + 1, ()))
        image, mask = image[:, top : top + ch, left : left + cw], mask[top : top + ch, left : left + cw]
        if float(torch.rand(())) < self.flip:
            image, mask = image.flip(-1), mask.flip(-1)
        return self.normalize(image.contiguous(), mask.contiguous())
