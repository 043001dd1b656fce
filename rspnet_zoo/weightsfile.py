"""Zoo weight files: safetensors whose metadata carries a sha256 of the tensors, checked on every read.

The hash covers each tensor in sorted key order (name, dtype, shape, bytes), so a flipped byte, a
renamed or reshaped tensor all change it. It is computed while the tensors are read, in the same pass
that refuses NaN and Inf. Files without the field (plain safetensors from elsewhere) are read unchecked
for the hash but still refused when not finite.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import WeightsError

TENSORS_SHA256 = "tensors_sha256"


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
