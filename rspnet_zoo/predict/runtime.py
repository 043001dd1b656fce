"""Runners: one callable from normalised images to logits, whatever runs the model.

Evaluation, prediction and bench loop over a runner, so a deployed file is measured by the very code
that measures the torch model: ``TorchRunner`` wraps an ``nn.Module`` on a device, ``OnnxRunner`` an
exported ONNX file (float or int8) in an onnxruntime session, ``OpenVinoRunner`` one compiled by OpenVINO
(``FILE_RUNTIMES``). A runner also carries what a caller needs around the call: its name, the class names
and the normalisation its inputs were made with (a torch model's cfg; an exported file's metadata).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from rspnet_zoo.errors import ZooError
from rspnet_zoo.spec.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

DEPLOYED_SUFFIXES = (".onnx",)


class Runner(Protocol):
    """``runner(images)``: ``B x C x H x W`` float images, normalised by ``mean``/``std``, to logits
    ``B x num_classes x h x w`` (``h, w`` may be the images' or a fraction of them)."""

    name: str
    num_classes: int | None  # None: a file that does not say
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def check_input(self, shape: Sequence[int]) -> None:
        """Raise one line if images of ``shape`` (B x C x H x W) cannot be run, before any work is done."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def require(module: str, extra: str = "export") -> Any:
    """An optional dependency (of the ONNX path by default), or one clear line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ZooError(f"{module} is not installed: pip install 'rspnet-zoo[{extra}]'") from None


def logits_of(output: torch.Tensor | dict) -> torch.Tensor:
    """torchvision segmentation models return ``{'out': logits, ...}``; zoo models return logits."""
    return output["out"] if isinstance(output, dict) else output


def class_names_of(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("label_names")
    return list(names) if names and len(names) == model.num_classes else [str(i) for i in range(model.num_classes)]


class TorchRunner:
    """An ``nn.Module`` in eval mode on ``device`` (default: where its parameters are), without gradients."""

    def __init__(self, model: nn.Module, device: torch.device | str | None = None):
        parameter = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else getattr(parameter, "device", torch.device("cpu"))
        self.model = model.to(self.device).eval()
        cfg = getattr(model, "pretrained_cfg", None) or {}
        genotype = getattr(model, "genotype", None)
        self.name = genotype.name if genotype is not None else str(cfg.get("architecture", type(model).__name__))
        self.num_classes = getattr(model, "num_classes", None)
        self.class_names = class_names_of(model) if self.num_classes is not None else []
        self.mean = tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN))
        self.std = tuple(cfg.get("std", IMAGENET_DEFAULT_STD))

    def check_input(self, shape: Sequence[int]) -> None:
        """A module takes any size it can compute."""

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(images.to(self.device)))


def session_options(threads: int | None = None) -> Any:
    """onnxruntime options for ``threads`` intra-op threads (default: onnxruntime's own choice) whose threads
    block instead of spinning when idle: onnxruntime's default spin-wait after a run keeps every core busy
    and slows whatever runs next (the next contender of an interleaved round, another session)."""
    options = require("onnxruntime").SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def providers_for(device: torch.device | str | None) -> list[str]:
    """The onnxruntime execution provider for a torch device name: CPU, or CUDA where this onnxruntime has it."""
    device = torch.device(device or "cpu")
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in require("onnxruntime").get_available_providers():
        return ["CUDAExecutionProvider"]
    raise ZooError(f"onnxruntime here runs on cpu only, not on '{device}' (onnxruntime-gpu brings CUDA)")


def onnxruntime_errors() -> tuple[type[Exception], ...]:
    """The exception classes onnxruntime raises (each derives from ``Exception`` alone)."""
    state = require("onnxruntime").capi.onnxruntime_pybind11_state
    return tuple(c for c in vars(state).values() if isinstance(c, type) and issubclass(c, Exception))


def reason_of(error: Exception) -> str:
    """onnxruntime's message without its ``[ONNXRuntimeError] : 7 : INVALID_PROTOBUF :`` prefix, on one line."""
    text = (str(error).splitlines() or [type(error).__name__])[0]
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)


class FileRunner:
    """What the runners of an exported file share: the name, classes and normalisation its metadata states
    (ImageNet's normalisation and numbered classes where it does not), the check of an input's shape against
    the file's fixed dimensions, and a batch run in pieces of the file's fixed batch size. A subclass loads the
    file in its runtime, calls ``_describe`` and runs one piece in ``_run``."""

    runtime = ""

    def _describe(self, file: Path, metadata: dict[str, str], shape: Sequence[int | None], channels: int | None):
        """``shape``: the input's dimensions (None where dynamic); ``channels``: the logits' (None: dynamic)."""
        if len(shape) != 4:
            raise ZooError(f"{file}: not an image model (one input of 4 dimensions expected)")
        self.file, self.metadata, self.input_shape = file, metadata, list(shape)
        self.name = metadata.get("name", file.stem)
        self.mean = tuple(self._stated("mean", IMAGENET_DEFAULT_MEAN))
        self.std = tuple(self._stated("std", IMAGENET_DEFAULT_STD))
        names = self._stated("class_names", None)
        self.num_classes = len(names) if names else channels
        self.class_names = list(names or (str(i) for i in range(self.num_classes or 0)))
        self.precision = metadata.get("precision", "float32")

    def _stated(self, key: str, default: Any) -> Any:
        """A JSON value of the file's metadata, or ``default`` where the file does not state it."""
        if key not in self.metadata:
            return default
        try:
            return json.loads(self.metadata[key])
        except json.JSONDecodeError:
            raise ZooError(f"{self.file}: its metadata '{key}' is not JSON: {self.metadata[key][:40]!r}") from None

    def check_input(self, shape: Sequence[int]) -> None:
        """One line where the file cannot take images of ``shape`` (a file exported at a fixed size); a
        fixed batch size is no limit: a batch runs in pieces of that size."""
        wanted = self.input_shape[1:]
        if len(shape) != 4 or any(w is not None and w != s for w, s in zip(wanted, shape[1:])):
            want = "x".join("N" if d is None else str(d) for d in wanted)
            raise ZooError(
                f"{self.file} takes {want} images, not {'x'.join(map(str, shape[1:]))}: "
                "export it with --dynamic-size to run it at any size"
            )

    def _run(self, array: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.check_input(images.shape)
        batch = self.input_shape[0] or len(images)
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(np.concatenate([self._run(array[i : i + batch]) for i in range(0, len(array), batch)]))


def existing_file(file: str | Path) -> Path:
    file = Path(file)
    if not file.is_file():
        raise ZooError(f"{file}: no such ONNX file")
    return file


class OnnxRunner(FileRunner):
    """An exported ONNX file in an onnxruntime session."""

    runtime = "onnxruntime"

    def __init__(self, file: str | Path, threads: int | None = None, device: torch.device | str | None = None):
        onnxruntime = require("onnxruntime")
        file = existing_file(file)
        try:
            self.session = onnxruntime.InferenceSession(
                str(file), session_options(threads), providers=providers_for(device)
            )
        except onnxruntime_errors() as e:
            raise ZooError(f"{file}: onnxruntime cannot load it ({reason_of(e)})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ZooError(f"{file}: not an image model (one input of 4 dimensions expected)")
        self.input = inputs[0]
        channels = self.session.get_outputs()[0].shape[1]
        self._describe(
            file,
            dict(self.session.get_modelmeta().custom_metadata_map),
            [d if isinstance(d, int) else None for d in self.input.shape],
            channels if isinstance(channels, int) else None,
        )

    def _run(self, array: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(None, {self.input.name: array})[0]
        except onnxruntime_errors() as e:
            shape = "x".join(map(str, array.shape))
            raise ZooError(f"{self.file}: onnxruntime failed on a {shape} input ({reason_of(e)})") from None


class OpenVinoRunner(FileRunner):
    """An exported ONNX file compiled by OpenVINO for the CPU, for latency (one request at a time). Float parts
    run in float32: OpenVINO would run them in bfloat16 on a CPU that has it, and a float file would no longer
    give its model's outputs."""

    runtime = "openvino"

    def __init__(self, file: str | Path, threads: int | None = None, device: torch.device | str | None = None):
        openvino = require("openvino", extra="openvino")
        file = existing_file(file)
        if torch.device(device or "cpu").type != "cpu":
            raise ZooError(f"--runtime openvino runs on cpu here, not on '{device}'")
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = openvino.Core().compile_model(str(file), "CPU", config)
        except RuntimeError as e:
            raise ZooError(f"{file}: openvino cannot load it ({_first_line(e)})") from None
        if len(self.compiled.inputs) != 1:
            raise ZooError(f"{file}: not an image model (one input of 4 dimensions expected)")
        self.request = self.compiled.create_infer_request()
        channels = self.compiled.outputs[0].get_partial_shape()
        metadata = require("onnx").load(str(file), load_external_data=False).metadata_props
        self._describe(
            file,
            {p.key: p.value for p in metadata},
            [d.get_length() if d.is_static else None for d in self.compiled.inputs[0].get_partial_shape()],
            channels[1].get_length() if channels.rank.is_static and channels[1].is_static else None,
        )

    def _run(self, array: np.ndarray) -> np.ndarray:
        try:
            return self.request.infer({0: array})[self.compiled.outputs[0]].copy()
        except RuntimeError as e:
            shape = "x".join(map(str, array.shape))
            raise ZooError(f"{self.file}: openvino failed on a {shape} input ({_first_line(e)})") from None


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


FILE_RUNTIMES: dict[str, type[FileRunner]] = {"onnxruntime": OnnxRunner, "openvino": OpenVinoRunner}


def file_runner(
    file: str | Path, runtime: str = "onnxruntime", threads: int | None = None, device: torch.device | str | None = None
) -> FileRunner:
    """An exported file in ``runtime`` (a key of ``FILE_RUNTIMES``)."""
    if runtime not in FILE_RUNTIMES:
        raise ZooError(f"unknown runtime '{runtime}' for an exported file: one of {', '.join(FILE_RUNTIMES)}")
    return FILE_RUNTIMES[runtime](file, threads=threads, device=device)


def is_deployed_file(ref: str | Path) -> bool:
    """A reference that names an exported file (by its suffix) rather than a zoo model."""
    return Path(ref).suffix.lower() in DEPLOYED_SUFFIXES


def load_runner(
    ref: str,
    device: torch.device | str | None = None,
    optimize: bool = False,
    threads: int | None = None,
    runtime: str | None = None,
) -> Runner:
    """A zoo model reference (name[.tag], built folder) or an exported file, ready to run on ``device``;
    ``optimize``: a torch model's inference fold (``rspnet_zoo.nn.fold``); ``runtime``: what runs an exported
    file (``FILE_RUNTIMES``; default onnxruntime)."""
    if is_deployed_file(ref):
        if optimize:
            raise ZooError(f"--optimize applies to torch models; {ref} runs as it was exported")
        return file_runner(ref, runtime or "onnxruntime", threads=threads, device=device)
    if runtime is not None:
        raise ZooError(f"--runtime {runtime} runs exported files; export '{ref}' first (rspnet-zoo export)")
    from rspnet_zoo.nn.fold import optimize as fold
    from rspnet_zoo.zoo.registry import load_trained

    net = load_trained(ref)
    if device is not None:
        net.to(device)
    return TorchRunner(fold(net) if optimize else net, device)


def as_runner(model: nn.Module | Runner, device: torch.device | str | None = None) -> Runner:
    """``model`` itself if it is a runner already, else a ``TorchRunner`` of it on ``device``."""
    return TorchRunner(model, device) if isinstance(model, nn.Module) else model
