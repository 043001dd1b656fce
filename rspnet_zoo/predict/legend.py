"""What a prediction's colours mean: class-id masks, class outlines, a drawn legend and a palette file.

A mask's pixel values are the class ids, in the smallest format that holds every id of the model
(``mask_format``): a palette-indexed PNG (PIL mode ``P``: any tool reads the ids, viewers show the class
colours) up to 256 classes, a 16-bit grey PNG up to 65,536, a 32-bit integer TIFF above. ``palette.json``
beside them names every colour and says which format the masks are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rspnet_zoo.fsutil import atomic_path, atomic_write_text

PALETTE_FILE = "palette.json"
PALETTE_SIZE = 256  # a PNG palette holds at most 256 colours
OUTLINE = (255, 255, 255)
SWATCH = 12  # legend swatch side, px
ROW = 16  # legend row height, px
MARGIN = 6


SIXTEEN_BIT_IDS = 2**16  # a 16-bit PNG holds ids 0-65535


def mask_format(classes: int) -> tuple[str, str]:
    """The suffix and description of the mask file that holds every class id of a ``classes``-class model."""
    if classes <= PALETTE_SIZE:
        return ".png", "palette-indexed PNG: pixel value = class id"
    if classes <= SIXTEEN_BIT_IDS:
        return ".png", "16-bit grey PNG: pixel value = class id"
    return ".tif", "32-bit integer TIFF: pixel value = class id (a PNG holds 65,536 ids at most)"


def save_mask(labels: np.ndarray, colours: np.ndarray, dest: Path) -> Path:
    """Class ids in ``mask_format(len(colours))``, to ``dest`` with that format's suffix."""
    suffix, _ = mask_format(len(colours))
    dest = dest.with_suffix(suffix)
    with atomic_path(dest) as tmp:
        if len(colours) <= PALETTE_SIZE:
            image = Image.fromarray(labels.astype(np.uint8), mode="P")
            image.putpalette(colours.astype(np.uint8).flatten().tolist(), rawmode="RGB")
        elif len(colours) <= SIXTEEN_BIT_IDS:
            image = Image.fromarray(labels.astype(np.uint16))
        else:
            image = Image.fromarray(labels.astype(np.int32))
        image.save(tmp, format="PNG" if suffix == ".png" else "TIFF")
    return dest


def outline(labels: np.ndarray) -> np.ndarray:
    """True on the pixels whose right or lower neighbour is another class: a 1-px line between classes."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def draw_legend(picture: np.ndarray, entries: Sequence[tuple[str, tuple[int, int, int], float]]) -> np.ndarray:
    """``picture`` (HxWx3 uint8) with a white panel on its right: a swatch, the class name and its share per entry.

    The panel grows the picture downwards when the entries need more height than the picture has."""
    font = ImageFont.load_default()
    texts = [f"{name} {share:.1%}" for name, _, share in entries]
    text_width = max((int(font.getlength(t)) for t in texts), default=0)
    panel = MARGIN + SWATCH + MARGIN + text_width + MARGIN
    h, w = picture.shape[:2]
    height = max(h, 2 * MARGIN + ROW * len(entries))
    canvas = Image.new("RGB", (w + panel, height), (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (text, (_, colour, _)) in enumerate(zip(texts, entries)):
        top = MARGIN + i * ROW
        x = w + MARGIN
        draw.rectangle(
            [x, top, x + SWATCH - 1, top + SWATCH - 1], fill=tuple(int(c) for c in colour), outline=(0, 0, 0)
        )
        draw.text((x + SWATCH + MARGIN, top), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def write_palette(
    out_dir: Path, class_names: Sequence[str], colours: np.ndarray, alpha: float, unpainted: Sequence[str]
) -> Path:
    """``palette.json``: id, name and colour of every class, and how the overlays were drawn."""
    doc = dict(
        classes=[
            dict(id=i, name=name, rgb=rgb, hex="#{:02x}{:02x}{:02x}".format(*rgb))
            for i, (name, rgb) in enumerate(zip(class_names, colours.astype(int).tolist()))
        ],
        mask=mask_format(len(colours))[1],
        overlay=dict(alpha=alpha, outline=list(OUTLINE), unpainted=[n for n in class_names if n.lower() in unpainted]),
    )
    dest = out_dir / PALETTE_FILE
    # indented for people up to a palette's classes; past that json's C encoder (no indent) keeps a
    # 100,000-class model from spending seconds here
    atomic_write_text(dest, json.dumps(doc, indent=2 if len(colours) <= PALETTE_SIZE else None) + "\n")
    return dest
