"""Prediction for people: class maps written as a palette-indexed mask and drawn as an overlay on the image.

The palette comes from matplotlib's qualitative colour maps; a class named background or void stays
black in the mask and leaves the image as it is in the overlay. The overlay blends the classes in at a
stated alpha, outlines the borders between classes and carries a legend (``legend.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from torch import nn

from rspnet_zoo.data.files import read_image
from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import atomic_path, writable_output
from rspnet_zoo.predict.legend import OUTLINE, PALETTE_FILE, draw_legend, outline, save_mask, write_palette
from rspnet_zoo.spec.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

UNPAINTED = ("background", "void", "unlabeled", "unlabelled")


def palette(class_names: Sequence[str]) -> np.ndarray:
    """``num_classes x 3`` uint8 colours, distinct for up to 20 classes."""
    n = len(class_names)
    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "hsv"]
    positions = range(n) if n <= 20 else np.linspace(0, 1, n, endpoint=False)
    colours = (np.array([cmap(p)[:3] for p in positions]) * 255).round().astype(np.uint8)
    colours[[i for i, name in enumerate(class_names) if name.lower() in UNPAINTED]] = 0
    return colours


def class_names_of(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("label_names")
    return list(names) if names and len(names) == model.num_classes else [str(i) for i in range(model.num_classes)]


@torch.no_grad()
def predict_labels(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Class ids (int64 HxW) for one float 3xHxW image in [0, 1], normalised as the model's cfg says."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = torch.tensor(cfg.get("mean", IMAGENET_DEFAULT_MEAN)).view(-1, 1, 1)
    std = torch.tensor(cfg.get("std", IMAGENET_DEFAULT_STD)).view(-1, 1, 1)
    device = next(model.parameters()).device
    logits = model(((image - mean) / std)[None].to(device))
    return logits[0].argmax(0).cpu()


def overlay(
    image: torch.Tensor, labels: torch.Tensor, colours: np.ndarray, class_names: Sequence[str], alpha: float = 0.5
) -> np.ndarray:
    """The image with every painted class blended in at ``alpha`` and a white line between classes."""
    rgb = image.permute(1, 2, 0).numpy() * 255.0
    ids = labels.numpy()
    blend = rgb * (1 - alpha) + colours[ids] * alpha
    unpainted = [i for i, name in enumerate(class_names) if name.lower() in UNPAINTED]
    keep = np.isin(ids, unpainted)[..., None]
    picture = np.where(keep, rgb, blend)
    picture[outline(ids)] = OUTLINE
    return picture.round().clip(0, 255).astype(np.uint8)


def save_png(array: np.ndarray, dest: Path) -> Path:
    with atomic_path(dest) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return dest


def prediction_files(images: Sequence[Path], out_dir: Path, inputs: Sequence[Path] = ()) -> list[tuple[Path, Path]]:
    """``(<stem>_mask.png, <stem>_overlay.png)`` in ``out_dir`` for each image, each checked before any work
    (``fsutil.writable_output``): no two alike, none of them an input image or one of ``inputs`` (the
    model's files), none a device or outside ``out_dir``. ``palette.json`` is checked the same way."""
    stems = [Path(p).stem for p in images]
    duplicate = next((s for s in stems if stems.count(s) > 1), None)
    if duplicate is not None:
        raise ZooError(f"two input images are named '{duplicate}': their outputs would overwrite each other")
    writable_output(out_dir, folder=True)
    pairs = [(out_dir / f"{stem}_mask.png", out_dir / f"{stem}_overlay.png") for stem in stems]
    reads = [*images, *inputs]
    for file in [*(f for pair in pairs for f in pair), out_dir / PALETTE_FILE]:
        writable_output(file, avoid=reads, within=out_dir)
    return pairs


def predict_files(
    model: nn.Module,
    images: Sequence[Path],
    out_dir: Path,
    alpha: float = 0.5,
    class_names: Sequence[str] | None = None,
) -> list[dict]:
    """``<stem>_mask.png`` (class ids, palette-indexed) and ``<stem>_overlay.png`` (with a legend of the classes
    found) in ``out_dir`` for each image, and ``palette.json``; returns the share of every class found per image.
    The outputs are checked before the first image is read (``prediction_files``)."""
    outputs = prediction_files(images, out_dir)
    names = list(class_names or class_names_of(model))
    colours = palette(names)
    model.eval()
    results = []
    for path, (mask_file, overlay_file) in zip(map(Path, images), outputs):
        image = read_image(path)
        labels = predict_labels(model, image)
        counts = torch.bincount(labels.flatten(), minlength=len(names)).double() / labels.numel()
        found = sorted((i for i in range(len(names)) if counts[i] > 0), key=lambda i: -counts[i])
        legend = [(names[i], tuple(colours[i]), float(counts[i])) for i in found]
        picture = draw_legend(overlay(image, labels, colours, names, alpha), legend)
        results.append(
            dict(
                image=str(path),
                mask=str(save_mask(labels.numpy(), colours, mask_file)),
                overlay=str(save_png(picture, overlay_file)),
                classes={names[i]: round(float(counts[i]), 4) for i in found},
            )
        )
    write_palette(out_dir, names, colours, alpha, UNPAINTED)
    return results
