"""The timm encoder a decoder search runs over (``--encoder``): its name checked against timm's registry and its
feature levels at 1/4 .. 1/32 read from timm's ``feature_info`` (on the meta device: nothing is allocated),
before any data or supernet is built."""

from __future__ import annotations

import difflib

from rspnet_zoo.errors import ZooError
from searchers.rspnet.budgets import NUM_LEVELS, EncoderLevel, SearchEncoder

LATTICE_REDUCTIONS = tuple(4 * 2**i for i in range(NUM_LEVELS))  # 1/4 .. 1/32


def search_encoder(model: str, freeze: bool = False) -> SearchEncoder:
    """``model``'s feature levels the lattice starts from: at each of 1/4 .. 1/32 the deepest level timm gives
    there. Refuses a name timm does not know, a model without ``features_only``, and one whose levels
    leave a gap in 1/4 .. 1/32 or start below 1/8."""
    import timm

    from rspnet_zoo.nn.encoders import timm_levels

    if not timm.is_model(model):
        close = difflib.get_close_matches(model, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see timm.list_models())"
        raise ZooError(f"--encoder {model}: timm knows no such model{hint}")
    try:
        levels = timm_levels(model)
    except (RuntimeError, ValueError, TypeError, AssertionError) as e:
        raise ZooError(f"--encoder {model}: timm builds no feature extractor for it ({e})") from None
    deepest: dict[int, EncoderLevel] = {}
    for level in levels:
        if level.reduction in LATTICE_REDUCTIONS:
            deepest[level.reduction] = EncoderLevel(
                level=level.index, reduction=level.reduction, channels=level.channels
            )
    reductions = sorted(deepest)
    expected = list(LATTICE_REDUCTIONS[LATTICE_REDUCTIONS.index(reductions[0]) :]) if reductions else []
    if not reductions or reductions[0] > 8 or reductions != expected[: len(reductions)]:
        given = ", ".join(f"1/{level.reduction}" for level in levels)
        raise ZooError(
            f"--encoder {model}: its feature levels ({given}) do not cover 1/8 and every level below it to "
            "its deepest: the lattice needs them"
        )
    return SearchEncoder(model=model, levels=tuple(deepest[r] for r in reductions), freeze=freeze)
