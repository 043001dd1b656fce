"""The options commands share, each defined once, and the parsers that range-check every number on the
command line as it is parsed: before torch loads and before any work starts.

A number that is not finite (``nan``, ``inf``), below its floor or above its stated cap is a usage error
(one line, exit code 2), as is a size with a side over ``MAX_SIDE``. The caps are far above any real use;
they stop a typo from asking for terabytes or running for ever.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, NamedTuple

import typer

from rspnet_zoo.cli.output import JSON_OPTION_HELP

if TYPE_CHECKING:
    import torch

MAX_SIDE = 8192  # an image side: what a spec's input_size allows
MAX_PIXELS = 2**26  # pixels of one input batch (batch x H x W): one 8192x8192 image, or 32 of 1024x2048
# an image written or read: what predict reads (rspnet_zoo.data.files.MAX_IMAGE_PIXELS; tests hold them equal)
MAX_IMAGE_PIXELS = 4096 * 2048
MAX_SEED = 2**32 - 1  # numpy's seed range (torch's is wider)
MAX_BATCH = 4096
MAX_PROCESSES = 1024  # threads, worker processes, torchrun processes
MAX_COUNT = 10**7  # epochs, steps, rounds, images
MAX_CLASSES = 100_000  # the spec format's (rspnet_zoo.spec.models.MAX_CLASSES; tests hold them equal)
MAX_MS = 10**6  # a latency target


def _bound(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


class Number:
    """Parses an int, or a finite float, in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def __init__(self, kind: type, low: float, high: float, low_open: bool = False):
        self.kind, self.low, self.high, self.low_open = kind, low, high, low_open
        self.metavar = f"<{kind.__name__}>"

    def range_text(self) -> str:
        return f"{_bound(self.low)} {'<' if self.low_open else '<='} x <= {_bound(self.high)}"

    def __call__(self, value: Any) -> Any:
        if isinstance(value, self.kind) and not isinstance(value, bool):  # a default
            number = value
        else:
            try:
                number = self.kind(str(value).strip())
            except ValueError:
                noun = "an integer" if self.kind is int else "a number"
                raise typer.BadParameter(f"{value!r} is not {noun}") from None
        if not math.isfinite(number):
            raise typer.BadParameter(f"{value!r} is not a finite number")
        if (number <= self.low if self.low_open else number < self.low) or number > self.high:
            raise typer.BadParameter(f"{value!r} is not in the range {self.range_text()}")
        return number


class ImageSize(NamedTuple):
    height: int
    width: int


SIZE_TEXT = re.compile(r"(\d{1,9})(?:[x,](\d{1,9}))?")


def parse_size(value: Any) -> ImageSize:
    """'512' or '512x1024' (height x width), each side 1 to ``MAX_SIDE``."""
    if isinstance(value, tuple):  # a default
        return ImageSize(*value)
    m = SIZE_TEXT.fullmatch(str(value).strip())
    if not m:
        raise typer.BadParameter(f"{value!r} is not a size: give N or HxW, e.g. 512x1024")
    size = ImageSize(int(m.group(1)), int(m.group(2) or m.group(1)))
    if not all(1 <= side <= MAX_SIDE for side in size):
        raise typer.BadParameter(f"{value!r}: each side is 1 to {MAX_SIDE}")
    return size


def check_pixels(batch: int, size: ImageSize, limit: int = MAX_PIXELS, flag: str = "--size") -> None:
    """``batch`` images of ``size`` within ``limit`` pixels in all."""
    pixels = batch * size.height * size.width
    if pixels > limit:
        images = f"{batch} x " if batch > 1 else ""
        raise typer.BadParameter(
            f"{images}{size.height}x{size.width} is {pixels:,} pixels, at most {limit:,}", param_hint=flag
        )


SEED = Number(int, 0, MAX_SEED)
BATCH = Number(int, 1, MAX_BATCH)
PROCESSES = Number(int, 1, MAX_PROCESSES)
COUNT = Number(int, 1, MAX_COUNT)
INDEX = Number(int, 0, MAX_COUNT)
CLASSES = Number(int, 1, MAX_CLASSES)
FRACTION = Number(float, 0.0, 1.0)
LEARNING_RATE = Number(float, 0.0, 10.0)
MILLISECONDS = Number(float, 0.0, MAX_MS, low_open=True)


def number(default: Any, *flags: str, kind: Number, **kwargs: Any) -> Any:
    """A typer option parsed by one of the range-checked number parsers above."""
    return typer.Option(default, *flags, parser=kind, metavar=kind.metavar, **kwargs)


def seed(help: str) -> Any:
    return number(0, "--seed", kind=SEED, help=help)


def size(default: str | None, help: str, show_default: str | bool = True) -> Any:
    """``--size`` as an ``ImageSize`` (annotate the parameter ``ImageSize`` or ``ImageSize | None``)."""
    return typer.Option(default, "--size", parser=parse_size, metavar="<HxW>", help=help, show_default=show_default)


def device(default: str | None, show_default: str | bool = True, help: str = "cpu, cuda, ...") -> Any:
    return typer.Option(default, "--device", help=help, show_default=show_default)


JSON = typer.Option(False, "--json", help=JSON_OPTION_HELP)
OPTIMIZE = typer.Option(
    False, "--optimize", help="Run rspnet_zoo.optimize(model) (BN folded, channels_last): same outputs, faster."
)
FILE_RUNTIME = typer.Option(
    None, "--runtime", help="What runs an exported FILE.onnx: onnxruntime or openvino (the [openvino] extra).",
    show_default="onnxruntime",
)  # fmt: skip
DATA_HELP = "synthetic (embedded), cityscapes, camvid or folder."
DATA = typer.Option("synthetic", "--data", help=DATA_HELP)


def parse_device(value: str | None) -> torch.device | None:
    """``--device`` as a torch device (parsed in the command body: torch loads only where it is used)."""
    import torch

    if value is None:
        return None
    try:
        return torch.device(value)
    except RuntimeError:
        raise typer.BadParameter(
            f"{value!r} is not a torch device (cpu, cuda, cuda:1, ...)", param_hint="--device"
        ) from None


THREADS = number(
    None, "--threads", kind=PROCESSES, help="CPU threads (intra-op).", show_default="the cores that are free"
)
AMP = typer.Option(
    None,
    "--amp",
    help="Mixed precision: bf16 (recent GPUs and CPUs) or fp16 (older GPUs, loss-scaled).",
    show_default="off",
)
WORKERS = number(
    None,
    "--workers",
    kind=Number(int, 0, MAX_PROCESSES),
    help="Data-loader processes.",
    show_default="on a GPU the cores per process (at most 8), on CPU 0",
)
