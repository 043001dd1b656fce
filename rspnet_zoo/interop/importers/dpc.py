"""DeepLab's dense prediction cell (tensorflow/models, research/deeplab/core/dense_prediction_cell.py): its
JSON encoding, a list of branches ``{"op": "conv", "kernel": k, "rate": [rate_h, rate_w], "input": j}``
-> the ``dpc`` head with DeepLab's decoder on a timm encoder.

The cell reads the encoder's deepest level and the decoder its level at ``low_level_reduction`` (DeepLab's
``decoder_output_stride``, 4). DeepLab's rates are written for output stride 16 and multiplied by
16 // output_stride (its ``conv_rate_multiplier``), so the spec keeps the file's rates and records the
multiplier. The file is read as strict JSON (the reader of spec files); a branch it cannot be is one line
with the JSON pointer into the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rspnet_zoo.errors import SpecError
from rspnet_zoo.interop.importers import GenotypeImportError
from rspnet_zoo.spec.constants import CITYSCAPES_CLASSES
from rspnet_zoo.spec.io import genotype_from_dict, read_spec_text, strict_json
from rspnet_zoo.spec.models import Genotype

EXPECTED = 'a JSON list of branches {"op": "conv", "kernel": k, "rate": [rate_h, rate_w], "input": j}'
SOURCE = "tensorflow/models research/deeplab (core/dense_prediction_cell.py, model.py)"
OUTPUT_STRIDES = (8, 16)  # DeepLab's rates are for 16 and scale by 16 // output_stride
BRANCHES = ("head", "branches")


def read_cell(path: str | Path) -> list[dict[str, Any]]:
    """The branches of a DPC JSON file, as the spec's ``head.branches`` (DeepLab's ``op`` key dropped)."""
    source = str(path)
    doc = strict_json(read_spec_text(path), source)
    if not isinstance(doc, list) or not doc:
        raise SpecError("", f"expected {EXPECTED}; got {_kind(doc)}", source)
    branches = []
    for i, branch in enumerate(doc):
        if not isinstance(branch, dict):
            raise SpecError(f"/{i}", f"a branch is a JSON object, got {_kind(branch)}", source)
        branch = dict(branch)
        op = branch.pop("op", None)
        if op != "conv":
            raise SpecError(f"/{i}/op", f"{op!r} is not supported: the cell's branches are convs (op 'conv')", source)
        kernel = branch.get("kernel")
        if isinstance(kernel, int) and not isinstance(kernel, bool) and kernel == 1:
            branch.setdefault("rate", [1, 1])  # DeepLab reads no rate for a 1x1 conv
        branches.append(branch)
    return branches


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    return {dict: "an object", str: "a string", bool: "a boolean"}.get(type(value), type(value).__name__)


def dpc_head(branches: list[dict[str, Any]], input: str, low_level: str, output_stride: int = 16) -> dict[str, Any]:
    """The ``dpc`` head of a spec: the cell on ``input``, DeepLab's decoder with ``low_level``."""
    if output_stride not in OUTPUT_STRIDES:
        raise GenotypeImportError(f"output stride {output_stride}: DeepLab's DPC runs at {OUTPUT_STRIDES}")
    return {
        "type": "dpc",
        "input": input,
        "low_level": low_level,
        "branches": branches,
        "rate_multiplier": 16 // output_stride,
    }


Levels = list[tuple[int, int]]  # (channels, reduction) per timm feature index


def timm_encoder(
    model: str, output_stride: int, pretrained: str | None
) -> tuple[dict[str, Any], Levels, dict[str, list[float]]]:
    """The spec's encoder entry for timm's ``model`` at ``output_stride``, its feature levels ((channels,
    reduction) per index, as timm's ``feature_info`` gives them) and the input normalisation its weights
    expect (timm's ``pretrained_cfg``), built on the meta device: no weights."""
    import timm

    from rspnet_zoo.nn.encoders import timm_levels

    if not timm.is_model(model):
        raise GenotypeImportError(f"unknown timm model '{model}' (see timm.list_models())")
    kwargs = {"output_stride": output_stride}
    try:
        levels = [(level.channels, level.reduction) for level in timm_levels(model, tuple(kwargs.items()))]
    except (TypeError, ValueError, AssertionError, RuntimeError) as e:
        raise GenotypeImportError(f"timm cannot build '{model}' with {kwargs} as a feature extractor: {e}") from None
    cfg = timm.models.get_pretrained_cfg(model)
    norm = {key: list(getattr(cfg, key)) for key in ("mean", "std") if cfg is not None and getattr(cfg, key, None)}
    return {"model": model, "kwargs": kwargs, "pretrained": pretrained or False}, levels, norm


def dpc_spec(
    branches: list[dict[str, Any]],
    encoder: dict[str, Any],
    levels: Levels,
    norm: dict[str, list[float]] | None = None,
    output_stride: int = 16,
    low_level_reduction: int = 4,
    num_classes: int = 19,
    name: str | None = None,
    description: str | None = None,
    source: str | None = None,
) -> Genotype:
    """The cell ``branches`` on ``encoder`` (``{"model", "kwargs", "pretrained"}``), whose feature levels
    are ``levels`` ((channels, reduction) per timm feature index) and whose input normalisation is ``norm``
    (mean, std); a branch the spec refuses is named by its pointer in the cell file ``source``."""
    deep = len(levels) - 1
    low = next((i for i, (_, reduction) in enumerate(levels) if reduction == low_level_reduction), None)
    if low is None:
        found = ", ".join(str(r) for _, r in levels)
        raise GenotypeImportError(
            f"{encoder['model']} has no feature level at reduction {low_level_reduction} (it has {found})"
        )
    nodes = [
        {
            "id": f"level{i}",
            "encoder": "backbone",
            "level": i,
            "reduction": levels[i][1],
            "channels": levels[i][0],
            "inputs": [{"paths": [{"node": "input"}]}],
        }
        for i in sorted({low, deep})
    ]
    doc = {
        "format_version": 1,
        "name": name or "dpc",
        "description": description
        or f"DeepLab's dense prediction cell and decoder on {encoder['model']} at output stride {output_stride}.",
        "provenance": {
            "searcher": "dpc",
            "dataset": "cityscapes",
            "notes": f"DeepLab's dense prediction cell {Path(source or 'cell.json').name} (its JSON encoding) "
            f"and decoder as {SOURCE} build them: rates x{16 // output_stride} at output stride {output_stride}, "
            f"decoder at 1/{low_level_reduction}",
        },
        "encoders": {"backbone": encoder},
        "network": {"nodes": nodes},
        "head": dpc_head(branches, f"level{deep}", f"level{low}", output_stride),
        "defaults": {
            "num_classes": num_classes,
            "input_size": [3, 1025, 2049],
            **(norm or {}),
            **({"class_names": list(CITYSCAPES_CLASSES)} if num_classes == len(CITYSCAPES_CLASSES) else {}),
        },
    }
    try:
        return genotype_from_dict(doc)
    except SpecError as e:
        raise in_cell_file(e, source) from None


def in_cell_file(error: SpecError, source: str | None) -> SpecError:
    """A spec error in ``/head/branches`` as an error in the cell file (the file is that list); others as they are."""
    prefix = "/" + "/".join(BRANCHES)
    if source is None or error.pointer is None or not (error.pointer + "/").startswith(prefix + "/"):
        return error
    return SpecError(error.pointer[len(prefix) :], error.reason, source)
