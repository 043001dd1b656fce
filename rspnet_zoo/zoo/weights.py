"""Weight files on disk, every reader in one place, each failure one line naming the file.

Zoo weight files are safetensors whose metadata carries a sha256 of the tensors, checked on every read,
and says what the weights are.

The hash covers each tensor in sorted key order (name, dtype, shape, bytes), so a flipped byte, a
renamed or reshaped tensor all change it. It is computed while the tensors are read, in the same pass
that checks them (``check_tensors``). Files without the field (plain safetensors from elsewhere) are read
unchecked for the hash but still checked otherwise. Torch pickles (checkpoints, published weights) are
read with ``weights_only=True`` only, and the tensors in them go through the same ``check_tensors``.

Every tensor read or written is one of ``TENSOR_DTYPES`` (floating point for parameters and statistics,
int64 for BatchNorm's step counter) and finite: NaN or Inf in a floating or complex tensor, and any other
dtype (int8 or uint8 quantised weights, bool, complex, float8), are refused with one line naming the tensor,
never cast. ``check_fit`` then holds the tensors against the model they are for: the same keys, shapes and
kind of dtype (floating point tensors are loaded as the model's float32).

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

import contextlib
import hashlib
import json
import warnings
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from rspnet_zoo.errors import WeightsError, ZooError

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


def _update(h: hashlib._Hash, key: str, tensor: torch.Tensor) -> None:
    h.update(f"{key}\0{str(tensor.dtype).removeprefix('torch.')}\0{list(tensor.shape)}\0".encode())
    h.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
TENSOR_DTYPES = (*FLOAT_DTYPES, torch.int64)
_NUMPY_DTYPES = (torch.float16, torch.float32, torch.float64, torch.complex64, torch.complex128)


def _dtype(tensor_or_dtype: torch.Tensor | torch.dtype) -> str:
    return str(getattr(tensor_or_dtype, "dtype", tensor_or_dtype)).removeprefix("torch.")


def _finite(tensor: torch.Tensor) -> bool:
    """numpy's isfinite: one vectorised pass without torch's per-op dispatch and thread pool, which cost far more
    than the check itself on the many small tensors of a model; complex values count as finite when both parts
    are."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return True
    if tensor.dtype not in _NUMPY_DTYPES:  # bfloat16, float8, complex32: no numpy dtype
        tensor = tensor.to(torch.complex64 if tensor.is_complex() else torch.float32)
    return bool(np.isfinite(tensor.numpy()).all())


def check_tensor(key: object, tensor: object, where: str) -> torch.Tensor:
    """``tensor`` if it is a plain, finite tensor of one of ``TENSOR_DTYPES``; else one WeightsError line
    naming ``key`` in ``where``."""
    if not isinstance(key, str):
        raise WeightsError(f"{where}: key {key!r} is not a tensor name")
    if not isinstance(tensor, torch.Tensor):
        raise WeightsError(f"{where}: '{key}' is {type(tensor).__name__}, not a tensor")
    if tensor.layout != torch.strided or tensor.is_meta or tensor.is_quantized:
        raise WeightsError(f"{where}: tensor '{key}' is not a plain dense tensor ({tensor.layout}, {_dtype(tensor)})")
    if not _finite(tensor.detach().cpu()):
        raise WeightsError(f"{where}: tensor '{key}' holds NaN or Inf values; these weights are unusable")
    if tensor.dtype not in TENSOR_DTYPES:
        stated = ", ".join(map(_dtype, TENSOR_DTYPES))
        raise WeightsError(
            f"{where}: tensor '{key}' is {_dtype(tensor)}; weights are {stated} only, and other dtypes "
            "(quantised, boolean, complex) are refused rather than cast"
        )
    return tensor


def check_tensors(state: Mapping[str, object], where: str) -> dict[str, torch.Tensor]:
    """Every entry of ``state`` through ``check_tensor``, in key order (the first fault is named)."""
    for key in sorted(state, key=str):
        check_tensor(key, state[key], where)
    return dict(state)


def fit_problem(
    own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], adapted: Collection[str] = ()
) -> str | None:
    """What keeps checked ``state`` from loading strictly into a model whose state dict is ``own``, or None:
    missing, unexpected and mis-shaped tensors, and a tensor whose kind (floating point or integer) is not
    the model's. ``adapted`` keys may differ in shape (timm adapts them: the first conv for ``in_chans``,
    the classifier for ``num_classes``)."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and k not in adapted and state[k].shape != own[k].shape]
    kind = [k for k in own if k in state and state[k].is_floating_point() != own[k].is_floating_point()]
    if not (missing or unexpected or wrong or kind):
        return None
    if missing:
        first = f"missing {missing[0]}"
    elif unexpected:
        first = f"unexpected {unexpected[0]}"
    elif wrong:
        first = f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, the spec needs {tuple(own[wrong[0]].shape)}"
    else:
        first = f"{kind[0]} is {_dtype(state[kind[0]])}, the model holds {_dtype(own[kind[0]])}"
    counts = f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped"
    return counts + (f", {len(kind)} of another dtype" if kind else "") + f" tensors ({first})"


def check_fit(
    own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], where: str, adapted: Collection[str] = ()
) -> None:
    """``fit_problem`` as one WeightsError line naming ``where``."""
    problem = fit_problem(own, state, adapted)
    if problem:
        raise WeightsError(f"{where} does not match the spec: {problem}")


def tensors_sha256(state: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        _update(h, key, state[key].detach().cpu())
    return h.hexdigest()


def save_weights(state: Mapping[str, torch.Tensor], file: Path, metadata: Mapping[str, str]) -> None:
    """Write ``state`` with ``metadata`` and the tensors' sha256; tensors that ``check_tensors`` refuses
    (NaN or Inf above all) are never written."""
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    check_tensors(state, f"{file}: refused to write weights")
    save_file(state, str(file), metadata={**metadata, TENSORS_SHA256: tensors_sha256(state)})


@contextlib.contextmanager
def _opened(file: Path) -> Iterator:
    """safe_open with its failures (missing, truncated, a bad or oversized header) as one WeightsError line."""
    try:
        with safe_open(str(file), framework="pt") as f:
            yield f
    except WeightsError:
        raise
    except FileNotFoundError:
        raise WeightsError(f"{file}: no such weights file") from None
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{file}: not a safetensors file ({e})") from None


def read_header(file: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """The tensor shapes and metadata of ``file``, from its header alone."""
    with _opened(file) as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}, dict(f.metadata() or {})


def read_metadata(file: Path) -> dict[str, str]:
    """The metadata alone, for listings: a file that is not safetensors reads as empty."""
    try:
        return read_header(file)[1]
    except WeightsError:
        return {}


def read_weights(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of ``file``; one WeightsError line naming it when the bytes are not the
    ones that were written or a tensor is not finite."""
    with _opened(file) as f:
        metadata = dict(f.metadata() or {})
        state = {key: f.get_tensor(key) for key in f.keys()}
    check_loaded(file, state, metadata)
    return state, metadata


def check_loaded(file: Path, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """Tensors read from ``file`` through ``check_tensors`` and, when its ``metadata`` records one, against the
    sha256 of the tensors that were written; returns their sha256."""
    h = hashlib.sha256()
    for key in sorted(state, key=str):
        _update(h, key, check_tensor(key, state[key], str(file)))
    expected = metadata.get(TENSORS_SHA256)
    if expected is not None and h.hexdigest() != expected:
        raise WeightsError(
            f"{file}: tensor data do not match the sha256 in its metadata ({h.hexdigest()[:12]} != {expected[:12]}): "
            "the file is corrupted; rebuild or re-download it"
        )
    return h.hexdigest()


def check_same(file: Path, state: Mapping[str, torch.Tensor], sha256: str) -> None:
    """Tensors that another loader (timm's) read from ``file`` are the ones checked, whose sha256 was
    ``sha256``: a file changed between the check and the load is refused, not loaded unchecked."""
    if tensors_sha256(state) != sha256:
        raise WeightsError(f"{file}: changed between its check and its load; load it again")


def _first_line(e: BaseException) -> str:
    """The line of a torch.load failure that says what is wrong (its messages run to 7 lines)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "GLOBAL" in line:
            return line
        if "WeightsUnpickler error:" in line:
            reason = line.partition("WeightsUnpickler error:")[2].strip()
            return reason or (lines[i + 1] if i + 1 < len(lines) else "")
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def torch_load(file: Path, error: type[ZooError] = ZooError):
    """``torch.load(weights_only=True)``, its refusals and read failures as one ``error`` line naming ``file``."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise error(f"{file}: no such file") from None
    except Exception as e:  # a damaged file fails anywhere in zip, pickle or storage code, with any type
        reason = _first_line(e)
        if "GLOBAL" in reason:  # a class or function to import and call: code, not tensors
            raise error(
                f"{file}: refused: the pickle holds more than tensors, which torch.load(weights_only=True) "
                f"will not run ({reason})"
            ) from None
        raise error(f"{file}: not a readable checkpoint ({reason})") from None
