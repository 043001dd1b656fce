"""What a prediction's colours mean: class-id masks, class outlines, a drawn legend and a palette file.

A mask's pixel values are the class ids, in the smallest format that holds every id of the model
(``mask_format``): a palette-indexed PNG (PIL mode ``P``: any tool reads the ids, viewers show the class
colours) up to 256 classes, a 16-bit grey PNG up to 65,536, a 32-bit integer TIFF above. ``palette.json``
beside them names every colour and says which format the masks are.
A legend swatch is drawn as its class looks in the overlay: framed in the class colour (the colour of the
class's outlines) and filled with the class's blended colour in that picture (the mean of its fill), so
that a person matches regions to names by eye whatever colour the image had under them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rspnet_zoo.fsutil import atomic_path, atomic_write_text

PALETTE_FILE = "palette.json"
PALETTE_SIZE = 256  # a PNG palette holds at most 256 colours
OUTLINE_WIDTH = 2  # px, inside each region, in the class colour
SWATCH = 14  # legend swatch side, px
FRAME = 3  # legend swatch frame, px, in the class colour
ROW = 18  # legend row height, px
MARGIN = 6
# (pixels, their neighbours) to the right, left, below and above
NEIGHBOURS = (
    (np.s_[:, :-1], np.s_[:, 1:]),
    (np.s_[:, 1:], np.s_[:, :-1]),
    (np.s_[:-1, :], np.s_[1:, :]),
    (np.s_[1:, :], np.s_[:-1, :]),
)


@dataclass(frozen=True)
class Swatch:
    """One legend entry: the class colour (outlines, frame) and how its fill looks (``looks``)."""

    name: str
    colour: tuple[int, int, int]
    looks: tuple[int, int, int]
    share: float


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
    if dest.suffix.lower() != suffix:
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


def outline(labels: np.ndarray, width: int = OUTLINE_WIDTH) -> np.ndarray:
    """True on the pixels within ``width`` pixels of another class, on both sides of every border: each
    region's own rim, which the overlay draws in the region's class colour."""
    edge = np.zeros(labels.shape, dtype=bool)
    for _ in range(width):
        grown = edge.copy()
        for here, there in NEIGHBOURS:
            grown[here] |= (labels[here] != labels[there]) | edge[there]
        edge = grown
    return edge


def draw_legend(picture: np.ndarray, swatches: Sequence[Swatch]) -> np.ndarray:
    """``picture`` (HxWx3 uint8) with a white panel on its right: per class a swatch framed in its colour and
    filled as it looks, its name and its share. The panel grows the picture downwards when the entries need
    more height than the picture has."""
    font = ImageFont.load_default()
    texts = [f"{s.name} {s.share:.1%}" for s in swatches]
    text_width = max((int(font.getlength(t)) for t in texts), default=0)
    panel = MARGIN + SWATCH + MARGIN + text_width + MARGIN
    h, w = picture.shape[:2]
    height = max(h, 2 * MARGIN + ROW * len(swatches))
    canvas = Image.new("RGB", (w + panel, height), (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (text, swatch) in enumerate(zip(texts, swatches)):
        top, x = MARGIN + i * ROW, w + MARGIN
        box = [x, top, x + SWATCH - 1, top + SWATCH - 1]
        draw.rectangle(box, fill=tuple(swatch.looks), outline=tuple(swatch.colour), width=FRAME)
        draw.text((x + SWATCH + MARGIN, top + 1), text, fill=(0, 0, 0), font=font)
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
        overlay=dict(
            alpha=alpha,
            outline=f"{OUTLINE_WIDTH} px inside each region, in its class colour",
            unpainted=[n for n in class_names if n.lower() in unpainted],
        ),
    )
    dest = out_dir / PALETTE_FILE
    # indented for people up to a palette's classes; past that json's C encoder (no indent) keeps a
    # 100,000-class model from spending seconds here
    atomic_write_text(dest, json.dumps(doc, indent=2 if len(colours) <= PALETTE_SIZE else None) + "\n")
    return dest
