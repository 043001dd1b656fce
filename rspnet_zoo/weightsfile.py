"""Zoo weight files: safetensors whose metadata carries a sha256 of the tensors, checked on every read,
and says what the weights are.

The hash covers each tensor in sorted key order (name, dtype, shape, bytes), so a flipped byte, a
renamed or reshaped tensor all change it. It is computed while the tensors are read, in the same pass
that refuses NaN and Inf. Files without the field (plain safetensors from elsewhere) are read unchecked
for the hash but still refused when not finite.

The metadata keys this module owns (safetensors metadata values are strings):

- ``tensors_sha256``: the hash above.
- ``weights_status``: ``trained``, ``imported`` or ``initialised`` (see ``STATUSES``), with its facts:
  trained: ``trained_on`` (the data set) and ``metrics`` (JSON: the val split's mIoU, mean accuracy, ...);
  imported: ``source`` (the published checkpoint it was converted from) and ``source_sha256``;
  initialised: ``init_seed``, the seed of the random initialisation (never trained, not for prediction).
  Files written before the field existed have no status ("unrecorded").

Every writer of a zoo weight file goes through ``save_weights`` with one of ``trained``, ``imported`` or
``initialised`` below merged into its metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import WeightsError

TENSORS_SHA256 = "tensors_sha256"
STATUS = "weights_status"
TRAINED, IMPORTED, INITIALISED, UNRECORDED = "trained", "imported", "initialised", "unrecorded"
STATUSES = (TRAINED, IMPORTED, INITIALISED)
USABLE = (TRAINED, IMPORTED)  # what pretrained=True loads and timm.list_pretrained() lists


def trained(data: str, metrics: Mapping[str, object]) -> dict[str, str]:
    summary = {k: metrics[k] for k in ("miou", "mean_acc", "fw_iou", "pixel_acc", "images") if k in metrics}
    return {STATUS: TRAINED, "trained_on": data, "metrics": json.dumps(summary, sort_keys=True)}


def imported(source: str, source_sha256: str | None = None) -> dict[str, str]:
    return {STATUS: IMPORTED, "source": source, **({"source_sha256": source_sha256} if source_sha256 else {})}


def initialised(seed: int) -> dict[str, str]:
    return {STATUS: INITIALISED, "init_seed": str(seed)}


def status_facts(metadata: Mapping[str, str]) -> dict[str, str]:
    """The status keys of ``metadata``: what a copy of the weights (``build --weights``) carries over."""
    keys = (STATUS, "trained_on", "metrics", "source", "source_sha256", "init_seed")
    return {k: metadata[k] for k in keys if k in metadata}


def weights_status(metadata: Mapping[str, str]) -> str:
    return metadata.get(STATUS, UNRECORDED)


def describe_status(metadata: Mapping[str, str]) -> str:
    """One line for ``list`` and the model card."""
    status = weights_status(metadata)
    if status == TRAINED:
        miou = json.loads(metadata.get("metrics", "{}")).get("miou")
        return f"trained on {metadata.get('trained_on', '?')}" + (f" (val mIoU {miou:.4f})" if miou is not None else "")
    if status == IMPORTED:
        return f"imported from {metadata.get('source', '?')}"
    if status == INITIALISED:
        return f"initialised (seed {metadata.get('init_seed', '?')}), never trained"
    return "status unrecorded (written before weight files recorded it)"


def read_metadata(file: Path) -> dict[str, str]:
    """The metadata alone (the header), for listings; a file that is not safetensors reads as empty."""
    try:
        with safe_open(str(file), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError):
        return {}


def _update(h: hashlib._Hash, key: str, tensor: torch.Tensor) -> None:
    h.update(f"{key}\0{str(tensor.dtype).removeprefix('torch.')}\0{list(tensor.shape)}\0".encode())
    h.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())


def _finite(tensor: torch.Tensor) -> bool:
    """numpy's isfinite: per-tensor torch ops cost ~1 ms each on a busy CPU, numpy's microseconds."""
    if not tensor.is_floating_point():
        return True
    if tensor.dtype not in (torch.float16, torch.float32, torch.float64):  # bfloat16, float8: no numpy dtype
        tensor = tensor.float()
    return bool(np.isfinite(tensor.numpy()).all())


def tensors_sha256(state: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        _update(h, key, state[key].detach().cpu())
    return h.hexdigest()


def save_weights(state: Mapping[str, torch.Tensor], file: Path, metadata: Mapping[str, str]) -> None:
    """Write ``state`` with ``metadata`` and the tensors' sha256."""
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    save_file(state, str(file), metadata={**metadata, TENSORS_SHA256: tensors_sha256(state)})


def read_weights(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of ``file``; one WeightsError line naming it when the bytes are not the
    ones that were written or a tensor is not finite."""
    h = hashlib.sha256()
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(file), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            for key in sorted(f.keys()):
                tensor = f.get_tensor(key)
                _update(h, key, tensor)
                if not _finite(tensor):
                    raise WeightsError(f"{file}: tensor '{key}' holds NaN or Inf values; these weights are unusable")
                state[key] = tensor
    except WeightsError:
        raise
    except FileNotFoundError:
        raise WeightsError(f"{file}: no such weights file") from None
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{file}: not a safetensors file ({e})") from None
    expected = metadata.get(TENSORS_SHA256)
    if expected is not None and h.hexdigest() != expected:
        raise WeightsError(
            f"{file}: tensor data do not match the sha256 in its metadata ({h.hexdigest()[:12]} != {expected[:12]}): "
            "the file is corrupted; rebuild or re-download it"
        )
    return state, metadata
