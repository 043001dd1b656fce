"""Mixed precision: autocast to bf16 or fp16 around the forward pass and the loss, and torch's gradient
scaler for fp16.

Parameters, gradients and optimiser state stay fp32; autocast picks the precision per op (convolutions
and matrix products in the low precision, reductions, softmax and the loss in fp32). bf16 keeps fp32's
exponent range and needs no loss scaling: it is the choice on GPUs from Ampere on and on CPUs with native
bf16 instructions (AVX-512 BF16, AMX), where it also halves activation memory; elsewhere on a CPU it runs
but emulated, no faster than fp32. fp16 is for GPUs without fast bf16 (V100, T4): its narrow range needs
the loss scaled so that small gradients do not flush to zero, which ``GradScaler`` does and undoes.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch

from rspnet_zoo.errors import ZooError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str | None) -> str | None:
    if amp is not None and amp not in AMP_DTYPES:
        raise ZooError(f"unknown --amp '{amp}' (choose {', '.join(AMP_DTYPES)})")
    return amp


def autocast(amp: str | None, device: torch.device) -> AbstractContextManager:
    """The forward pass and loss in ``amp`` (bf16, fp16) on ``device``; full precision when ``amp`` is None."""
    if check_amp(amp) is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


def grad_scaler(amp: str | None, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16; a pass-through scaler (``enabled=False``) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=check_amp(amp) == "fp16")
