"""A plain folder: ``images/`` and ``masks/`` (same stem, ``.png`` masks of class ids, 255 = ignore) and
``classes.txt`` (one class name per line, in id order). ``images/<split>/`` and ``masks/<split>/`` are
used when they exist; otherwise every split reads the whole folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rspnet_zoo.data.files import DataError, ImageMaskPairs, identity_lut, image_files, pair_by_name, require_dir
from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import read_capped

CLASSES_FILE = "classes.txt"
MAX_CLASS_LIST_BYTES = 2**16  # 255 names


def read_class_names(path: Path) -> list[str]:
    try:
        text = read_capped(path, MAX_CLASS_LIST_BYTES).decode("utf-8")
        names = [line.strip() for line in text.splitlines() if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (the class list, one name per line)") from None
    except (OSError, UnicodeDecodeError, ZooError) as e:
        raise DataError(f"{path}: unreadable class list ({e})") from None
    if not names or len(names) > 255:
        raise DataError(f"{path}: a class list needs 1 to 255 names, found {len(names)}")
    return names


def folder(root: Path, split: str, transform: Callable | None = None) -> ImageMaskPairs:
    images_dir = require_dir(root / "images", "the folder layout's images")
    masks_dir = require_dir(root / "masks", "the folder layout's masks")
    if (images_dir / split).is_dir():
        images_dir, masks_dir = images_dir / split, require_dir(masks_dir / split, f"masks of split '{split}'")
    names = read_class_names(root / CLASSES_FILE)
    pairs = pair_by_name(image_files(images_dir), lambda image: masks_dir / f"{image.stem}.png")
    return ImageMaskPairs(pairs, names, identity_lut(len(names)), transform, source=str(images_dir))
