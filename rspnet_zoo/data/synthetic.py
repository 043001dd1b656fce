"""The embedded benchmark: procedurally generated scenes of textured shapes, nothing to download.

Eight object classes differ in shape, texture and colour statistics (no single cue separates all
of them), over a low-frequency background class. Objects of very different sizes share one scene and
later ones occlude earlier ones, so a network needs both fine detail and wide context. Every image is
a pure function of ``(seed, split, index)``: splits are disjoint streams, any size can be asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

SPLITS = ("train", "val", "test")
DEFAULT_SIZE = (128, 128)
DEFAULT_LENGTH = {"train": 2000, "val": 100, "test": 100}

Shape = Callable[[np.ndarray, np.ndarray], np.ndarray]
Texture = Callable[[np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray]


def _disc(x, y):
    return x * x + y * y <= 1.0


def _square(x, y):
    return np.maximum(np.abs(x), np.abs(y)) <= 0.8


def _triangle(x, y):
    return (y <= 0.5) & (np.sqrt(3.0) * x - y <= 1.0) & (-np.sqrt(3.0) * x - y <= 1.0)


def _ring(x, y):
    r2 = x * x + y * y
    return (r2 <= 1.0) & (r2 >= 0.36)


def _ellipse(x, y):
    return x * x + 4.0 * y * y <= 1.0


def _cross(x, y):
    ax, ay = np.abs(x), np.abs(y)
    return ((ax <= 0.3) & (ay <= 1.0)) | ((ay <= 0.3) & (ax <= 1.0))


def _star(x, y):
    r = np.sqrt(x * x + y * y)
    c = x / np.maximum(r, 1e-6)  # cos(5 theta) as a polynomial of cos(theta): no arctan2 per pixel
    return r <= 0.55 + 0.4 * (c * (16 * c**4 - 20 * c**2 + 5))


def _bar(x, y):
    return (np.abs(x) <= 1.0) & (np.abs(y) <= 0.22)


def _flat(u, v, period, rng):
    return np.zeros_like(u)


def _stripes(u, v, period, rng):
    return 0.5 + 0.5 * np.sin(u * (2 * np.pi / period))


def _checker(u, v, period, rng):
    return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)


def _dots(u, v, period, rng):
    w = 2 * np.pi / period
    return (np.cos(u * w) * np.cos(v * w) > 0.4).astype(np.float32)


def _speckle(u, v, period, rng):
    return rng.random(u.shape, dtype=np.float32)


def _rings(u, v, period, rng):
    return 0.5 + 0.5 * np.cos(np.hypot(u, v) * (2 * np.pi / period))


def _waves(u, v, period, rng):
    return 0.5 + 0.5 * np.sin((u + 0.35 * period * np.sin(v * (2 * np.pi / period))) * (2 * np.pi / period))


def _gradient(u, v, period, rng):
    return np.clip(0.5 + u / (4.0 * period), 0.0, 1.0)


@dataclass(frozen=True)
class ObjectClass:
    """How one class looks: its outline, its texture and the two colours the texture mixes."""

    name: str
    shape: Shape
    texture: Texture
    colours: tuple[tuple[float, float, float], tuple[float, float, float]]
    period: tuple[float, float] = (4.0, 8.0)  # texture period in pixels at 128 px, scaled with the image


OBJECT_CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("disc", _disc, _rings, ((0.85, 0.20, 0.15), (0.95, 0.60, 0.20))),
    ObjectClass("square", _square, _checker, ((0.15, 0.55, 0.20), (0.80, 0.85, 0.30))),
    ObjectClass("triangle", _triangle, _stripes, ((0.15, 0.25, 0.80), (0.55, 0.75, 0.95))),
    ObjectClass("ring", _ring, _flat, ((0.95, 0.85, 0.15), (0.95, 0.85, 0.15))),
    ObjectClass("ellipse", _ellipse, _waves, ((0.60, 0.20, 0.70), (0.90, 0.55, 0.85))),
    ObjectClass("cross", _cross, _dots, ((0.10, 0.60, 0.65), (0.90, 0.95, 0.95))),
    ObjectClass("star", _star, _speckle, ((0.85, 0.35, 0.55), (0.30, 0.10, 0.15))),
    ObjectClass("bar", _bar, _gradient, ((0.25, 0.20, 0.15), (0.75, 0.55, 0.35)), period=(6.0, 12.0)),
)
CLASS_NAMES: tuple[str, ...] = ("background",) + tuple(c.name for c in OBJECT_CLASSES)
NUM_CLASSES = len(CLASS_NAMES)


def _smooth_field(size: tuple[int, int], grid: np.ndarray) -> np.ndarray:
    """A low-frequency 3xHxW field: ``grid`` (3xGxG) interpolated bilinearly as two thin matmuls
    (torch's, which stay fast on a busy machine where a threaded BLAS spins)."""
    g = grid.shape[-1]

    def weights(n: int) -> torch.Tensor:
        pos = torch.clamp((torch.arange(n, dtype=torch.float32) + 0.5) * g / n - 0.5, 0, g - 1)
        return torch.clamp(1.0 - (pos[:, None] - torch.arange(g, dtype=torch.float32)[None, :]).abs(), min=0.0)

    return (weights(size[0]) @ torch.from_numpy(grid) @ weights(size[1]).T).numpy()


def generate(
    size: tuple[int, int],
    rng: np.random.Generator,
    objects: tuple[int, int] = (4, 10),
    scales: tuple[float, float] = (0.05, 0.35),
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(image float32 3xHxW in [0, 1], mask uint8 HxW)``.

    Object radii are log-uniform in ``scales`` x the short side; each object is drawn only inside its
    bounding box, and textured only where it is visible, so the cost follows the painted area.
    """
    h, w = size
    side = min(h, w)
    gain = rng.uniform(0.85, 1.15)
    grid = rng.uniform(0.25, 0.7, (1, 4, 4)) + rng.uniform(-0.08, 0.08, (3, 4, 4))
    image = _smooth_field(size, (grid * gain).astype(np.float32))
    mask = np.zeros((h, w), dtype=np.uint8)

    count = int(rng.integers(objects[0], objects[1] + 1))
    radii = side * np.exp(rng.uniform(np.log(scales[0]), np.log(scales[1]), count))
    for radius in np.sort(radii)[::-1]:  # large first: small objects occlude parts of large ones
        label = int(rng.integers(1, NUM_CLASSES))
        spec = OBJECT_CLASSES[label - 1]
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        angle = rng.uniform(0, 2 * np.pi)
        period = rng.uniform(*spec.period) * side / 128.0
        c1, c2 = np.clip((np.asarray(spec.colours) + rng.uniform(-0.06, 0.06, (2, 3))) * gain, 0, 1).astype(np.float32)
        y0, y1 = max(int(cy - radius), 0), min(int(cy + radius) + 2, h)
        x0, x1 = max(int(cx - radius), 0), min(int(cx + radius) + 2, w)
        if y0 >= y1 or x0 >= x1:
            continue
        c, s = np.float32(np.cos(angle) / radius), np.float32(np.sin(angle) / radius)
        dy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
        dx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
        u, v = c * dx + s * dy, c * dy - s * dx  # in units of the radius
        inside = spec.shape(u, v)
        scale = np.float32(radius)
        t = spec.texture(u[inside] * scale, v[inside] * scale, period, rng).astype(np.float32)
        for ch in range(3):  # one 2-D masked write per channel: far cheaper than a 3-D fancy index
            image[ch, y0:y1, x0:x1][inside] = c1[ch] + (c2[ch] - c1[ch]) * t
        mask[y0:y1, x0:x1][inside] = label
    return image, mask


class SyntheticSegmentation(torch.utils.data.Dataset):
    """``length`` scenes of ``size`` from the ``split`` stream of ``seed``.

    Items are raw ``(image float32 3xHxW in [0, 1], mask int64 HxW)`` passed through ``transform``.
    """

    class_names = list(CLASS_NAMES)
    num_classes = NUM_CLASSES

    def __init__(
        self,
        split: str = "train",
        size: tuple[int, int] = DEFAULT_SIZE,
        length: int | None = None,
        seed: int = 0,
        transform: Callable | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"synthetic split must be one of {', '.join(SPLITS)}, not '{split}'")
        self.split = split
        self.size = (int(size[0]), int(size[1]))
        self.length = DEFAULT_LENGTH[split] if length is None else int(length)
        self.seed = seed
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def raw(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        image, mask = generate(self.size, rng)
        return torch.from_numpy(image), torch.from_numpy(mask).long()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.raw(index)
        return self.transform(image, mask) if self.transform is not None else (image, mask)
