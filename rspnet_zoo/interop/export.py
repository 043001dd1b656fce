"""Exports a user can run elsewhere: ONNX, TorchScript and ``torch.export`` programs.

Each file is written atomically and only after it was loaded back in its runtime (onnxruntime, the
TorchScript loader, ``torch.export.load``) and its output matched the eager model within
``TOLERANCE`` on a random input, at the export size and, with ``dynamic_size``, at an odd one too.
Every file carries the model's name, genotype sha256, class names and normalisation as metadata
(ONNX ``metadata_props``; an ``rspnet_zoo.json`` extra file in the TorchScript and torch.export archives).
"""

from __future__ import annotations

import contextlib
import json
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import atomic_path, writable_output
from rspnet_zoo.predict.infer import class_names_of
from rspnet_zoo.spec.io import spec_sha256

FORMATS = ("onnx", "torchscript", "exported")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "exported": ".pt2"}
EXTRA_FILE = "rspnet_zoo.json"
TOLERANCE = 1e-4
MIN_DYNAMIC_SIZE = 32
OPSET = 18


def require(module: str) -> Any:
    """An optional dependency of the ONNX path, or one clear line saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ZooError(f"{module} is not installed: pip install 'rspnet-zoo[export]'") from None


def export_metadata(model: nn.Module) -> dict[str, str]:
    """String metadata (ONNX stores strings only): what a runtime needs to feed and read the model."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    genotype = getattr(model, "genotype", None)
    meta = {
        "name": genotype.name if genotype is not None else str(cfg.get("architecture", type(model).__name__)),
        "mean": json.dumps(list(cfg.get("mean", (0.485, 0.456, 0.406)))),
        "std": json.dumps(list(cfg.get("std", (0.229, 0.224, 0.225)))),
    }
    if hasattr(model, "num_classes"):
        meta["class_names"] = json.dumps(class_names_of(model))
    if genotype is not None:
        meta["genotype_sha256"] = spec_sha256(genotype)
    return meta


def check_sizes(size: tuple[int, int], dynamic_size: bool) -> list[tuple[int, int]]:
    """The export size, and with ``dynamic_size`` an odd size beside it that the file must also run."""
    h, w = size
    return [size, (h + 7 + h % 2, w + 5 + w % 2)] if dynamic_size else [size]


def onnx_export(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    dest: Path,
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> None:
    """``model`` traced on ``inputs`` (which name the graph's inputs) into an ONNX file: how every ONNX file
    here is made. The TorchScript-based exporter takes a tenth of the dynamo exporter's time here and is just
    as exact. Its note on each Slice it leaves unfolded is about its own optimisation, nothing a user can act
    on, and would repeat for every export: it is kept off stderr, as is what the exporter prints."""
    with torch.no_grad(), contextlib.redirect_stdout(None), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            model.cpu(),
            tuple(x.cpu() for x in inputs.values()),
            str(dest),
            input_names=list(inputs),
            output_names=output_names,
            opset_version=OPSET,
            dynamic_axes=dynamic_axes,
            dynamo=False,
        )


def _onnx(model: nn.Module, x: torch.Tensor, dest: Path, dynamic_size: bool, meta: dict[str, str]) -> Callable:
    onnx, onnxruntime = require("onnx"), require("onnxruntime")
    dynamic = {"image": {0: "batch", 2: "height", 3: "width"}} if dynamic_size else None
    onnx_export(model, {"image": x}, dest, ["logits"], dynamic)
    proto = onnx.load(str(dest))
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(dest))
    session = onnxruntime.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    return lambda t: torch.from_numpy(session.run(None, {"image": t.numpy()})[0])


@contextlib.contextmanager
def torchscript_asked() -> Iterator[None]:
    """Quiet torch's deprecation of ``torch.jit.script/save/load`` where the user asked for TorchScript by
    name (``--format torchscript``, whose help says PyTorch deprecates it); nothing else here calls them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def _torchscript(model: nn.Module, x: torch.Tensor, dest: Path, dynamic_size: bool, meta: dict[str, str]) -> Callable:
    with torchscript_asked():
        torch.jit.save(torch.jit.script(model), str(dest), _extra_files={EXTRA_FILE: json.dumps(meta)})
        return torch.jit.load(str(dest))


def _exported(model: nn.Module, x: torch.Tensor, dest: Path, dynamic_size: bool, meta: dict[str, str]) -> Callable:
    dims = ({2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC},) if dynamic_size else None
    program = torch.export.export(model, (x,), dynamic_shapes=dims)
    torch.export.save(program, str(dest), extra_files={EXTRA_FILE: json.dumps(meta)})
    return torch.export.load(str(dest)).module()


EXPORTERS: dict[str, Callable[..., Callable]] = {"onnx": _onnx, "torchscript": _torchscript, "exported": _exported}


def read_metadata(file: str | Path) -> dict[str, str]:
    """The metadata an export carries, whatever its format."""
    file = Path(file)
    if file.suffix == ".onnx":
        return {p.key: p.value for p in require("onnx").load(str(file), load_external_data=False).metadata_props}
    extra = {EXTRA_FILE: ""}
    with zipfile.ZipFile(file) as archive:  # a TorchScript archive holds constants.pkl, a torch.export one not
        torchscript = any(name.endswith("/constants.pkl") for name in archive.namelist())
    if torchscript:
        with torchscript_asked():
            torch.jit.load(str(file), _extra_files=extra)
    else:
        torch.export.load(str(file), extra_files=extra)
    return json.loads(extra[EXTRA_FILE])


def export_model(
    model: nn.Module,
    fmt: str,
    dest: str | Path,
    size: tuple[int, int],
    dynamic_size: bool = False,
    reference: nn.Module | None = None,
) -> dict[str, Any]:
    """Write ``model`` as ``fmt`` to ``dest``, checked against ``reference`` (default: ``model``) in
    eval mode; returns what was written and the largest difference seen."""
    if fmt not in EXPORTERS:
        raise ZooError(f"unknown export format '{fmt}': one of {', '.join(FORMATS)}")
    if dynamic_size and min(size) < MIN_DYNAMIC_SIZE:
        raise ZooError(f"--dynamic-size needs an export size of at least {MIN_DYNAMIC_SIZE}x{MIN_DYNAMIC_SIZE}")
    reference = (reference or model).eval()
    model.eval()
    meta = export_metadata(reference)
    in_chans = getattr(reference, "in_chans", 3)
    dest = writable_output(dest)
    worst = 0.0
    with atomic_path(dest) as tmp, torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        run = EXPORTERS[fmt](model, torch.randn(1, in_chans, *size, generator=generator), tmp, dynamic_size, meta)
        for h, w in check_sizes(size, dynamic_size):
            x = torch.randn(1, in_chans, h, w, generator=generator)
            diff = (run(x) - reference(x)).abs().max().item()
            worst = max(worst, diff)
            if not diff <= TOLERANCE:
                raise ZooError(
                    f"the {fmt} export of '{meta['name']}' differs from the eager model by {diff:.3g} "
                    f"at {h}x{w} (at most {TOLERANCE} allowed): nothing written"
                )
    return dict(
        path=str(dest),
        format=fmt,
        size=list(size),
        dynamic_size=dynamic_size,
        checked_sizes=[list(s) for s in check_sizes(size, dynamic_size)],
        max_abs_diff=worst,
        bytes=dest.stat().st_size,
        metadata=meta,
    )
