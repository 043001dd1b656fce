"""What a prediction's colours mean: palette-indexed masks, class outlines, a drawn legend and a palette file.

The mask PNG is palette-indexed (PIL mode ``P``): its pixel values are the class ids, so any tool reads the
ids directly, while viewers show the class colours. ``palette.json`` beside the PNGs names every colour.
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


def save_mask(labels: np.ndarray, colours: np.ndarray, dest: Path) -> Path:
    """Class ids as a palette-indexed PNG; more than 256 classes cannot be indexed, so ids go to 16-bit grey."""
    with atomic_path(dest) as tmp:
        if len(colours) <= PALETTE_SIZE:
            image = Image.fromarray(labels.astype(np.uint8), mode="P")
            image.putpalette(colours.astype(np.uint8).flatten().tolist(), rawmode="RGB")
        else:
            image = Image.fromarray(labels.astype(np.uint16))
        image.save(tmp, format="PNG")
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
            dict(id=i, name=name, rgb=[int(c) for c in colour], hex="#{:02x}{:02x}{:02x}".format(*colour))
            for i, (name, colour) in enumerate(zip(class_names, colours))
        ],
        mask="palette-indexed PNG: pixel value = class id" if len(colours) <= PALETTE_SIZE else "16-bit class ids",
        overlay=dict(
            alpha=alpha,
            outline=f"{OUTLINE_WIDTH} px inside each region, in its class colour",
            unpainted=[n for n in class_names if n.lower() in unpainted],
        ),
    )
    dest = out_dir / PALETTE_FILE
    atomic_write_text(dest, json.dumps(doc, indent=2) + "\n")
    return dest
