"""Image/mask pairs on disk: the one dataset class the Cityscapes, CamVid and folder layouts fill in.

A layout only finds the pairs and says how raw mask values map to training ids (a 256-entry lookup
table; 255 is ignore, -1 marks a value the layout does not allow). Everything that can be wrong with
a file is reported as one line naming it: missing, undecodable or truncated, and larger than
MAX_IMAGE_PIXELS, which is checked from the header before any pixel is decoded (a prediction's memory grows
with the pixels; docs/benchmarks.md has the measurement).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from rspnet_zoo.data.transforms import IGNORE_INDEX
from rspnet_zoo.errors import ZooError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
INVALID = -1
MAX_IMAGE_PIXELS = 4096 * 2048  # four Cityscapes frames; PIL's own decompression-bomb limit is 89M
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")  # how PIL opens 16-bit grey PNGs and TIFFs


class DataError(ZooError):
    """A data set file or folder is missing or malformed."""


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: no such folder ({what})")
    return path


def image_files(folder: Path, pattern: str = "*") -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def identity_lut(num_classes: int, void: Sequence[int] = ()) -> np.ndarray:
    """Mask values 0..num_classes-1 are class ids, 255 and ``void`` are ignored, anything else is an error."""
    lut = np.full(256, INVALID, dtype=np.int16)
    lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    lut[list(void)] = IGNORE_INDEX
    return lut


def _open(path: Path) -> Image.Image:
    """The image with its header read and its size checked; no pixel is decoded yet."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: refused, more than the {MAX_IMAGE_PIXELS:,} pixels an image may have ({e})") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    if im.width * im.height > MAX_IMAGE_PIXELS:
        im.close()
        raise DataError(
            f"{path}: {im.width}x{im.height} is {im.width * im.height:,} pixels, more than the {MAX_IMAGE_PIXELS:,} "
            "(4096x2048) an image may have; downscale or crop it"
        )
    return im


def _decode(path: Path, im: Image.Image) -> None:
    """Decode the pixels now, so a truncated or damaged file is one line naming it."""
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{path}: the image data are truncated or damaged ({e})") from None


def read_image(path: Path) -> torch.Tensor:
    """float32 3xHxW in [0, 1]: 8-bit channels divided by 255, 16-bit grey by 65535 (not clipped), palette
    and grey images through their colours, alpha dropped."""
    with _open(path) as im:
        _decode(path, im)
        if im.mode in SIXTEEN_BIT:
            grey = np.asarray(im)
            if grey.min() < 0 or grey.max() > 65535:
                raise DataError(f"{path}: a {im.mode} image with values outside 0-65535 is not a 16-bit image")
            array = np.repeat((grey.astype(np.float32) / 65535.0)[..., None], 3, axis=2)
        elif im.mode == "F":
            raise DataError(f"{path}: a floating-point image has no defined range; save it as 8 or 16 bits")
        else:
            array = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def read_mask(path: Path, lut: np.ndarray, num_classes: int) -> torch.Tensor:
    """int64 HxW training ids from a single-channel (L or P) label PNG."""
    with _open(path) as im:
        _decode(path, im)
        if im.mode not in ("L", "P", *SIXTEEN_BIT):
            raise DataError(f"{path}: a mask must be a single-channel label image, not mode {im.mode}")
        raw = np.asarray(im)
    if raw.min() < 0 or raw.max() > 255:
        raise DataError(f"{path}: label value {int(raw.max() if raw.max() > 255 else raw.min())} is out of range 0-255")
    mapped = lut[raw.astype(np.uint8)]
    bad = mapped == INVALID
    if bad.any():
        value = int(raw[bad].flat[0])
        raise DataError(f"{path}: class id {value} is out of range (0-{num_classes - 1}, 255 = ignore)")
    return torch.from_numpy(mapped.astype(np.int64))


class ImageMaskPairs(torch.utils.data.Dataset):
    """Pairs of (image file, mask file); sizes are checked up front from the headers only."""

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        class_names: Sequence[str],
        lut: np.ndarray,
        transform: Callable | None = None,
        source: str = "",
    ):
        if not pairs:
            raise DataError(f"{source}: no images found")
        self.pairs = list(pairs)
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.lut = lut
        self.transform = transform
        for image, mask in self.pairs:
            with _open(image) as a, _open(mask) as b:
                if a.size != b.size:
                    raise DataError(
                        f"{mask}: mask is {b.size[0]}x{b.size[1]} but its image {image} is {a.size[0]}x{a.size[1]}"
                    )

    def __len__(self) -> int:
        return len(self.pairs)

    def raw(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.pairs[index]
        return read_image(image), read_mask(mask, self.lut, self.num_classes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.raw(index)
        return self.transform(image, mask) if self.transform is not None else (image, mask)


def pair_by_name(images: Sequence[Path], mask_for: Callable[[Path], Path]) -> list[tuple[Path, Path]]:
    """Every image needs its mask: the first one without is reported by name."""
    pairs = []
    for image in images:
        mask = mask_for(image)
        if not mask.is_file():
            raise DataError(f"{image}: no mask (expected {mask})")
        pairs.append((image, mask))
    return pairs
