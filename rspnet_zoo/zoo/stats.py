"""Sizes of a compiled spec, measured on the meta device so nothing is allocated."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.spec.io import spec_sha256
from rspnet_zoo.spec.models import Genotype
from rspnet_zoo.spec.plan import NetworkPlan


def meta_model(genotype: Genotype, num_classes: int | None = None, plan: NetworkPlan | None = None) -> GenotypeNet:
    """``genotype`` on the meta device; ``plan``, a lowering already made (a built model's), is reused."""
    with torch.device("meta"):
        return GenotypeNet(genotype, num_classes=num_classes, plan=plan, pretrained_encoders=False).eval()


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


SHIPPED_STATS = Path(__file__).with_name("shipped_stats.json")


@functools.cache
def _known() -> dict[str, dict[str, int]]:
    """Stats by spec sha256 for the life of the process, starting from the shipped specs' (counted once by
    ``python -m rspnet_zoo.zoo.stats``: counting them all costs ``rspnet-zoo list`` seconds of meta forward
    passes a call)."""
    return json.loads(SHIPPED_STATS.read_text()) if SHIPPED_STATS.is_file() else {}


def cached_spec_stats(genotype: Genotype) -> dict[str, int]:
    """spec_stats by spec sha: the shipped table's, else counted once for the life of the process (an
    edited or unshipped spec); nothing is written to disk."""
    known, sha = _known(), spec_sha256(genotype)
    if sha not in known:
        known[sha] = spec_stats(genotype)
    return known[sha]


def count_shipped() -> dict[str, dict[str, int]]:
    """Every shipped spec's stats, counted afresh, by spec sha256 (what ``shipped_stats.json`` holds)."""
    from rspnet_zoo.zoo.catalog import SHIPPED

    return {spec_sha256(g): spec_stats(g) for g in SHIPPED.values()}


if __name__ == "__main__":  # python -m rspnet_zoo.zoo.stats: rewrite shipped_stats.json after a shipped spec changed
    from rspnet_zoo.fsutil import atomic_write_text

    atomic_write_text(SHIPPED_STATS, json.dumps(count_shipped(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SHIPPED_STATS}")
