"""Image/mask pairs on disk: the one dataset class the Cityscapes, CamVid and folder layouts fill in.

A layout only finds the pairs and says how raw mask values map to training ids (a 256-entry lookup
table; 255 is ignore, -1 marks a value the layout does not allow). Everything that can be wrong with
a file is reported as one line naming it: missing, undecodable or truncated, and larger than
MAX_IMAGE_PIXELS, which is checked from the header before any pixel is decoded (a prediction's memory grows
with the pixels; docs/benchmarks.md has the measurement).

Images are read as a viewer shows them (``read_image``): the EXIF orientation applied (masks too, so a
pair stays aligned); colours brought to sRGB through the embedded ICC profile when there is one (a
Display P3 phone photo, a CMYK print file), Lab through littlecms, CMYK without a profile as viewers show
it (Pillow's conversion); transparent pixels composited over white; 16-bit grey scaled from 0-65535.
Floating-point images, whose range is not defined, are refused.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError

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


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """The image with its header read and its size checked; no pixel is decoded yet.

    Opened from a file object, not a path: Pillow memory-maps an uncompressed file opened by path and then
    lays a TIFF's rotating EXIF orientation over the wrong strides."""
    with contextlib.ExitStack() as stack:
        try:
            f = stack.enter_context(open(path, "rb"))
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = stack.enter_context(Image.open(f))
        except FileNotFoundError:
            raise DataError(f"{path}: no such file") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DataError(
                f"{path}: refused, more than the {MAX_IMAGE_PIXELS:,} pixels an image may have ({e})"
            ) from None
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{path}: not a readable image ({e})") from None
        if im.width * im.height > MAX_IMAGE_PIXELS:
            raise DataError(
                f"{path}: {im.width}x{im.height} is {im.width * im.height:,} pixels, more than the "
                f"{MAX_IMAGE_PIXELS:,} (4096x2048) an image may have; downscale or crop it"
            )
        yield im


ORIENTED = (2, 3, 4, 5, 6, 7, 8)  # EXIF orientations other than "as stored" (1)
TRANSPOSED = (5, 6, 7, 8)  # those that swap width and height


def shown_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) as a viewer shows the image: its EXIF orientation applied, from the header alone
    (Pillow's TIFF reader reports, and decodes, a TIFF as shown already)."""
    w, h = im.size
    rotated = im.format != "TIFF" and im.getexif().get(ExifTags.Base.Orientation) in TRANSPOSED
    return (h, w) if rotated else (w, h)


def _decode(path: Path, im: Image.Image) -> Image.Image:
    """Decode the pixels now, so a truncated or damaged file is one line naming it; returns them as a viewer
    shows them, the EXIF orientation applied."""
    try:
        im.load()
        return ImageOps.exif_transpose(im) if im.getexif().get(ExifTags.Base.Orientation) in ORIENTED else im
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{path}: the image data are truncated or damaged ({e})") from None


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.cache
def _lab_to_srgb() -> ImageCms.ImageCmsTransform:
    """CIE Lab (D50, the ICC connection space's white, as Photoshop's Lab) to sRGB."""
    return ImageCms.buildTransform(ImageCms.createProfile("LAB"), _srgb(), "LAB", "RGB")


def _colour_managed(path: Path, im: Image.Image) -> Image.Image:
    """``im`` in sRGB: RGB, or RGBA where it has transparency."""
    if im.mode == "LAB":
        # Pillow decodes Lab (a TIFF's CIELab) with a and b offset by 128, while its conversions out of LAB
        # (Image.convert and littlecms alike) read them as signed bytes: white would come out cyan.
        lab = np.asarray(im).copy()
        lab[..., 1:] ^= 0x80  # v - 128, as a two's complement byte
        return ImageCms.applyTransform(Image.frombytes("LAB", im.size, lab.tobytes()), _lab_to_srgb())
    target = "RGBA" if im.has_transparency_data else "RGB"
    profile = im.info.get("icc_profile")
    if not profile:
        return im.convert(target)  # CMYK without a profile: Pillow's conversion, as viewers show it
    if im.mode not in ("RGB", "RGBA", "CMYK", "L"):  # a palette or grey+alpha image: its colours first
        im = im.convert(target)
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return ImageCms.applyTransform(im, ImageCms.buildTransform(source, _srgb(), im.mode, target))
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
        raise DataError(f"{path}: its embedded colour profile cannot bring it to sRGB ({e})") from None


def read_image(path: Path) -> torch.Tensor:
    """float32 3xHxW in [0, 1], as a viewer shows the file (see the module docstring): 8-bit channels
    divided by 255, 16-bit grey by 65535 (not clipped)."""
    with _open(path) as opened:
        im = _decode(path, opened)
        if im.mode in SIXTEEN_BIT:
            grey = np.asarray(im)
            if grey.min() < 0 or grey.max() > 65535:
                raise DataError(f"{path}: a {im.mode} image with values outside 0-65535 is not a 16-bit image")
            array = np.repeat((grey.astype(np.float32) / 65535.0)[..., None], 3, axis=2)
        elif im.mode == "F":
            raise DataError(f"{path}: a floating-point image has no defined range; save it as 8 or 16 bits")
        else:
            array = np.asarray(_colour_managed(path, im), dtype=np.float32) / 255.0
            if array.shape[-1] == 4:  # transparent pixels over white, as on a page
                alpha = array[..., 3:]
                array = array[..., :3] * alpha + (1.0 - alpha)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)


def read_mask(path: Path, lut: np.ndarray, num_classes: int) -> torch.Tensor:
    """int64 HxW training ids from a single-channel (L or P) label PNG, its EXIF orientation applied as to
    its image."""
    with _open(path) as opened:
        im = _decode(path, opened)
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
                (aw, ah), (bw, bh) = shown_size(a), shown_size(b)
                if (aw, ah) != (bw, bh):
                    raise DataError(f"{mask}: mask is {bw}x{bh} but its image {image} is {aw}x{ah}")

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
