"""What a prediction's colours mean: palette-indexed masks, class outlines, a drawn legend and a palette file.

The mask PNG is palette-indexed (PIL mode ``P``): its pixel values are the class ids, so any tool reads the
ids directly, while viewers show the class colours. ``palette.json`` beside the PNGs names every colour.
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
            dict(id=i, name=name, rgb=[int(c) for c in colour], hex="#{:02x}{:02x}{:02x}".format(*colour))
            for i, (name, colour) in enumerate(zip(class_names, colours))
        ],
        mask="palette-indexed PNG: pixel value = class id" if len(colours) <= PALETTE_SIZE else "16-bit class ids",
        overlay=dict(alpha=alpha, outline=list(OUTLINE), unpainted=[n for n in class_names if n.lower() in unpainted]),
    )
    dest = out_dir / PALETTE_FILE
    atomic_write_text(dest, json.dumps(doc, indent=2) + "\n")
    return dest
