"""Sizes of a compiled spec, measured on the meta device so nothing is allocated."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from .model import GenotypeNet
from .spec import Genotype
from .specfile import spec_sha256


def meta_model(genotype: Genotype, num_classes: int | None = None) -> GenotypeNet:
    with torch.device("meta"):
        return GenotypeNet(genotype, num_classes=num_classes).eval()


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: torch.nn.Module, input_size: Sequence[int]) -> int:
    """FLOPs (multiply and add counted apart, as torch.utils.flop_counter does) of one forward pass."""
    x = torch.empty(1, *input_size, device=next(model.parameters()).device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def spec_stats(genotype: Genotype, num_classes: int | None = None) -> dict[str, int]:
    model = meta_model(genotype, num_classes)
    return dict(
        parameters=count_parameters(model),
        flops=count_flops(model, genotype.defaults.input_size),
    )


_MEMO: dict[str, dict[str, int]] = {}


def cached_spec_stats(genotype: Genotype) -> dict[str, int]:
    """spec_stats memoised by spec sha for the life of the process (a meta forward pass of the larger
    specs at their default input size takes seconds); nothing is written to disk."""
    sha = spec_sha256(genotype)
    if sha not in _MEMO:
        _MEMO[sha] = spec_stats(genotype)
    return _MEMO[sha]
