"""Prediction for people: class maps written as a palette-indexed mask and drawn as an overlay on the image.

The palette is Kelly's colours of maximum contrast (up to 20 classes; evenly spaced hues beyond), or the
official colours for the Cityscapes classes; a class named background or void stays black in the mask and
leaves the image as it is in the overlay. The overlay blends the classes in at a stated alpha, draws each
region's rim in its class colour, so the class shows whatever colour the image has there, and carries a
legend of swatches drawn as the classes look (``legend.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from torch import nn

from rspnet_zoo.data.cityscapes import cityscapes_classes
from rspnet_zoo.data.files import read_image
from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import atomic_path
from rspnet_zoo.predict.legend import Swatch, draw_legend, outline, save_mask, write_palette
from rspnet_zoo.spec.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

UNPAINTED = ("background", "void", "unlabeled", "unlabelled")


# Kelly (1965), the colours of maximum contrast, white and black left out; similar ones lie far apart
KELLY = (
    "#f3c300", "#875692", "#f38400", "#a1caf1", "#be0032", "#c2b280", "#848482", "#008856", "#e68fac", "#0067a5",
    "#f99379", "#604e97", "#f6a600", "#b3446c", "#dcd300", "#882d17", "#8db600", "#654522", "#e25822", "#2b3d26",
)  # fmt: skip


def palette(class_names: Sequence[str]) -> np.ndarray:
    """``num_classes x 3`` uint8 colours: the Cityscapes classes take their official colours; otherwise the
    painted classes take Kelly's colours in order (distinct for up to 20 of them), evenly spaced hues beyond;
    unpainted classes are black."""
    cityscapes = cityscapes_classes()
    if tuple(class_names) == cityscapes.names:
        return np.array(cityscapes.colours, dtype=np.uint8)
    painted = [i for i, name in enumerate(class_names) if name.lower() not in UNPAINTED]
    if len(painted) <= len(KELLY):
        chosen = np.array([[int(h[k : k + 2], 16) for k in (1, 3, 5)] for h in KELLY[: len(painted)]])
    else:
        hsv = colormaps["hsv"]
        chosen = np.array([hsv(p)[:3] for p in np.linspace(0, 1, len(painted), endpoint=False)]) * 255
    colours = np.zeros((len(class_names), 3), dtype=np.uint8)
    colours[painted] = np.asarray(chosen).round().reshape(-1, 3)
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
    """The image with every painted class blended in at ``alpha`` and its regions' rims (``legend.outline``)
    in the class colour."""
    rgb = image.permute(1, 2, 0).numpy() * 255.0
    ids = labels.numpy()
    painted = ~np.isin(ids, [i for i, name in enumerate(class_names) if name.lower() in UNPAINTED])
    picture = np.where(painted[..., None], rgb * (1 - alpha) + colours[ids] * alpha, rgb)
    rims = outline(ids) & painted
    picture[rims] = colours[ids[rims]]
    return picture.round().clip(0, 255).astype(np.uint8)


def swatches(picture: np.ndarray, labels: np.ndarray, colours: np.ndarray, class_names: Sequence[str]) -> list[Swatch]:
    """A legend entry per class found in ``labels``, largest first, each filled with the mean colour of its
    fill in ``picture`` (the overlay): how the class looks there."""
    counts = np.bincount(labels.ravel(), minlength=len(class_names)) / labels.size
    fill = ~outline(labels)
    out = []
    for i in sorted(np.flatnonzero(counts), key=lambda i: -counts[i]):
        region = (labels == i) & fill
        pixels = picture[region if region.any() else labels == i]
        looks = tuple(int(round(c)) for c in pixels.reshape(-1, 3).mean(0))
        out.append(Swatch(class_names[i], tuple(int(c) for c in colours[i]), looks, float(counts[i])))
    return out


def save_png(array: np.ndarray, dest: Path) -> Path:
    with atomic_path(dest) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return dest


def predict_files(
    model: nn.Module,
    images: Sequence[Path],
    out_dir: Path,
    alpha: float = 0.5,
    class_names: Sequence[str] | None = None,
) -> list[dict]:
    """``<stem>_mask.png`` (class ids, in ``legend.mask_format``: a TIFF above 65,536 classes) and
    ``<stem>_overlay.png`` (with a legend of the classes found) in ``out_dir`` for each image, drawn as a viewer
    shows the image (``data.files.read_image``), and ``palette.json``; returns the share of every class found
    per image."""
    _check_distinct([Path(p).stem for p in images])
    names = list(class_names or class_names_of(model))
    colours = palette(names)
    model.eval()
    results = []
    for path in map(Path, images):
        image = read_image(path)
        labels = predict_labels(model, image)
        picture = overlay(image, labels, colours, names, alpha)
        legend = swatches(picture, labels.numpy(), colours, names)
        results.append(
            dict(
                image=str(path),
                mask=str(save_mask(labels.numpy(), colours, out_dir / f"{path.stem}_mask.png")),
                overlay=str(save_png(draw_legend(picture, legend), out_dir / f"{path.stem}_overlay.png")),
                classes={s.name: round(s.share, 4) for s in legend},
            )
        )
    write_palette(out_dir, names, colours, alpha, UNPAINTED)
    return results


def _check_distinct(stems: Sequence[str]) -> None:
    duplicate = next((s for s in stems if stems.count(s) > 1), None)
    if duplicate is not None:
        raise ZooError(f"two input images are named '{duplicate}': their outputs would overwrite each other")


CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit"


def predict_cityscapes_files(model: nn.Module, images: Sequence[Path], out_dir: Path) -> list[dict]:
    """``<frame>_labelIds.png`` in ``out_dir`` for each image, as the Cityscapes benchmark server and its
    ``evalPixelLevelSemanticLabeling`` read predictions: each pixel the annotation id (labelId) of its
    predicted class, at the image's full resolution. ``<frame>`` is the image's name without
    ``_leftImg8bit`` (``frankfurt_000000_000294``), which is how the script finds a frame's prediction."""
    classes = cityscapes_classes()
    names = class_names_of(model)
    generic = names == [str(i) for i in range(model.num_classes)]
    if model.num_classes != len(classes.names) or not (generic or tuple(names) == classes.names):
        raise ZooError(
            f"--format cityscapes needs a model of the {len(classes.names)} Cityscapes classes in trainId order; "
            f"this one predicts {model.num_classes} ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
        )
    frames = [Path(p).stem.removesuffix(CITYSCAPES_IMAGE_SUFFIX) for p in images]
    _check_distinct(frames)
    to_label_id = np.array(classes.label_ids, dtype=np.uint8)
    model.eval()
    results = []
    for path, frame in zip(map(Path, images), frames):
        labels = predict_labels(model, read_image(path)).numpy()
        dest = save_png(to_label_id[labels], out_dir / f"{frame}_labelIds.png")
        results.append(dict(image=str(path), label_ids=str(dest)))
    return results
