"""Prediction for people: class maps written as a palette-indexed mask and drawn as an overlay on the image.

The model is a torch module or any runner (``runtime.py``: an exported file in its runtime, say). The
palette comes from matplotlib's qualitative colour maps; a class named background or void stays black in
the mask and leaves the image as it is in the overlay. The overlay blends the classes in at a stated
alpha, outlines the borders between classes and carries a legend (``legend.py``).
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
from rspnet_zoo.fsutil import atomic_path
from rspnet_zoo.predict.legend import OUTLINE, draw_legend, outline, save_mask, write_palette
from rspnet_zoo.predict.runtime import Runner, as_runner, class_names_of

__all__ = ["UNPAINTED", "class_names_of", "overlay", "palette", "predict_files", "predict_labels", "save_png"]

UNPAINTED = ("background", "void", "unlabeled", "unlabelled")


def palette(class_names: Sequence[str]) -> np.ndarray:
    """``num_classes x 3`` uint8 colours, distinct for up to 20 classes."""
    n = len(class_names)
    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "hsv"]
    positions = range(n) if n <= 20 else np.linspace(0, 1, n, endpoint=False)
    colours = (np.array([cmap(p)[:3] for p in positions]) * 255).round().astype(np.uint8)
    colours[[i for i, name in enumerate(class_names) if name.lower() in UNPAINTED]] = 0
    return colours


@torch.no_grad()
def predict_labels(model: nn.Module | Runner, image: torch.Tensor) -> torch.Tensor:
    """Class ids (int64 HxW) for one float 3xHxW image in [0, 1], normalised as the model says (a torch
    model's cfg, an exported file's metadata)."""
    run = as_runner(model)
    mean = torch.tensor(run.mean).view(-1, 1, 1)
    std = torch.tensor(run.std).view(-1, 1, 1)
    logits = run(((image - mean) / std)[None])
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


def predict_files(
    model: nn.Module | Runner,
    images: Sequence[Path],
    out_dir: Path,
    alpha: float = 0.5,
    class_names: Sequence[str] | None = None,
) -> list[dict]:
    """``<stem>_mask.png`` (class ids, palette-indexed) and ``<stem>_overlay.png`` (with a legend of the classes
    found) in ``out_dir`` for each image, and ``palette.json``; returns the share of every class found per image."""
    stems = [Path(p).stem for p in images]
    duplicate = next((s for s in stems if stems.count(s) > 1), None)
    if duplicate is not None:
        raise ZooError(f"two input images are named '{duplicate}': their outputs would overwrite each other")
    run = as_runner(model)
    names = list(class_names or run.class_names)
    colours = palette(names)
    results = []
    for path in map(Path, images):
        image = read_image(path)
        labels = predict_labels(run, image)
        counts = torch.bincount(labels.flatten(), minlength=len(names)).double() / labels.numel()
        found = sorted((i for i in range(len(names)) if counts[i] > 0), key=lambda i: -counts[i])
        legend = [(names[i], tuple(colours[i]), float(counts[i])) for i in found]
        picture = draw_legend(overlay(image, labels, colours, names, alpha), legend)
        results.append(
            dict(
                image=str(path),
                mask=str(save_mask(labels.numpy(), colours, out_dir / f"{path.stem}_mask.png")),
                overlay=str(save_png(picture, out_dir / f"{path.stem}_overlay.png")),
                classes={names[i]: round(float(counts[i]), 4) for i in found},
            )
        )
    write_palette(out_dir, names, colours, alpha, UNPAINTED)
    return results
