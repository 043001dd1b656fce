"""timm encoders inside a spec: one ``features_only`` module per encoder, held to the levels the spec writes.

The spec writes each level's reduction and channels, so the torch-free layer can plan without timm; here
they meet timm's ``feature_info``. ``create_encoder`` is the one way an encoder module is made (the builder
always checks what it built), and ``encoder_errors`` is the same check on the meta device, for ``validate``.
"""

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from rspnet_zoo.errors import SpecError, WeightsError, pointer, printable
from rspnet_zoo.spec.models import Encoder, Genotype
from rspnet_zoo.spec.plan import EncoderPlan, NetworkPlan, lower

# What ``encoder_errors`` checks that only timm can (``validate`` names them).
TIMM_CHECKS = ("model names", "kwargs", "levels", "reductions", "channels")


def pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``x`` zero-padded at the bottom and right to a multiple of ``multiple``: an encoder's input, so that
    every level comes out at least ``ceil(size / reduction)`` whatever the model's padding."""
    # Always padded, even by zero: a traced export (--dynamic-size) must keep the padding for other sizes.
    return F.pad(x, [0, (-x.shape[-1]) % multiple, 0, (-x.shape[-2]) % multiple])


def crop(feature: torch.Tensor, size: list[int], reduction: int) -> torch.Tensor:
    """An encoder level cut to ``ceil(size / reduction)``, the size every node's output has at ``reduction``."""
    return feature[:, :, : (size[0] + reduction - 1) // reduction, : (size[1] + reduction - 1) // reduction]


def _line(e: BaseException) -> str:
    """The first line of what timm (or the Hub client under it) raised: an error stays one line."""
    return printable((str(e).strip().splitlines() or [""])[0])


def _timm_name(encoder: Encoder, pretrained: bool) -> str:
    tag = encoder.pretrained if pretrained and isinstance(encoder.pretrained, str) else None
    return f"{encoder.model}.{tag}" if tag else encoder.model


def create_encoder(
    name: str,
    encoder: Encoder,
    levels: Sequence[EncoderPlan],
    in_chans: int,
    pretrained: bool = False,
    overlay: dict | None = None,
) -> nn.Module:
    """timm's ``features_only`` model of ``encoder`` at the levels the ``levels`` nodes read (its
    ``out_indices``, ascending), checked against them. With ``pretrained`` (and the spec's ``pretrained``
    set) timm loads its weights as it always does: its cache, the Hub, or ``overlay`` (timm's
    ``pretrained_cfg_overlay``, e.g. ``dict(file=...)``)."""
    at = ("encoders", name)
    if not timm.is_model(encoder.model):
        raise SpecError(pointer(*at, "model"), f"timm {timm.__version__} knows no model '{encoder.model}'")
    indices = sorted({n.level for n in levels})
    total = _level_count(encoder.model, tuple(sorted(encoder.kwargs.items())), in_chans, at)
    for n in levels:
        if n.level >= total:
            raise SpecError(
                pointer("network", "nodes", n.index, "level"),
                f"'{encoder.model}' has {total} feature levels (0..{total - 1}), not {n.level}",
            )
    load = pretrained and encoder.pretrained is not False
    try:
        model = timm.create_model(
            _timm_name(encoder, load),
            pretrained=load,
            pretrained_cfg_overlay=overlay if load else None,
            features_only=True,
            out_indices=tuple(indices),
            in_chans=in_chans,
            **encoder.kwargs,
        )
    except TypeError as e:
        raise SpecError(pointer(*at, "kwargs"), f"timm's '{encoder.model}' refused them: {_line(e)}") from None
    except (RuntimeError, OSError, ValueError) as e:
        if not load:
            raise SpecError(pointer(*at), f"timm cannot build '{encoder.model}': {_line(e)}") from None
        raise WeightsError(
            f"{pointer(*at, 'pretrained')}: timm cannot load the weights of '{_timm_name(encoder, True)}' "
            f"({type(e).__name__}: {_line(e)}); offline, timm reads its cache, or pass the file as "
            f"encoder_overlays={{'{name}': dict(file=...)}}"
        ) from None
    info = dict(zip(indices, zip(model.feature_info.reduction(), model.feature_info.channels())))
    for n in levels:
        reduction, channels = info[n.level]
        node = ("network", "nodes", n.index)
        if reduction != n.reduction:
            raise SpecError(
                pointer(*node, "reduction"),
                f"timm's '{encoder.model}' gives level {n.level} at 1/{reduction}, the node says 1/{n.reduction}",
            )
        if channels != n.out_channels:
            raise SpecError(
                pointer(*node, "channels"),
                f"timm's '{encoder.model}' gives {channels} channels at level {n.level}, "
                f"the node says {n.out_channels}",
            )
    return model


@dataclass(frozen=True)
class TimmLevel:
    """One entry of timm's ``feature_info``: its index (an ``out_indices`` value), reduction and channels."""

    index: int
    reduction: int
    channels: int


@functools.lru_cache(maxsize=64)
def timm_levels(model: str, kwargs: tuple[tuple[str, Any], ...] = (), in_chans: int = 3) -> tuple[TimmLevel, ...]:
    """Every feature level of timm's ``model`` built with ``kwargs`` (sorted items), read from its
    ``features_only`` model on the meta device once per process for these arguments (some kwargs, such as
    MobileNetV3's output_stride, only the feature model takes; its FeatureInfo keeps every level, whatever
    out_indices it selected). timm's own errors pass through: each caller says where they came from."""
    built = _on_meta(lambda: timm.create_model(model, features_only=True, in_chans=in_chans, **dict(kwargs)))
    return tuple(TimmLevel(i, info["reduction"], info["num_chs"]) for i, info in enumerate(built.feature_info.info))


def _level_count(model: str, kwargs: tuple[tuple[str, Any], ...], in_chans: int, at: tuple) -> int:
    """How many feature levels timm's ``model`` has, as a spec error at ``at`` where timm cannot say."""
    try:
        return len(timm_levels(model, kwargs, in_chans))
    except TypeError as e:
        raise SpecError(pointer(*at, "kwargs"), f"timm's '{model}' refused them: {_line(e)}") from None
    except (RuntimeError, ValueError) as e:
        raise SpecError(pointer(*at), f"timm cannot build '{model}': {_line(e)}") from None


def _on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` on the meta device (no memory, no initialisation), or for real for a model that computes
    with its tensors as it is built."""
    try:
        with torch.device("meta"):
            return build()
    except NotImplementedError:
        return build()


def image_convs(module: nn.Module, model: str) -> tuple[str, ...]:
    """Where timm's ``first_conv`` (the convs that read the image, which timm adapts to ``in_chans`` as it
    loads weights) sits in ``model``'s features_only ``module``: as named, with a top-level Sequential's name
    joined by '_' (FeatureListNet, FeatureHookNet: 'stem.0' -> 'stem_0'), or under 'model' (FeatureGetterNet)."""
    cfg = timm.models.get_pretrained_cfg(model)
    convs = cfg.first_conv if cfg is not None else None
    modules = dict(module.named_modules())
    found = []
    for conv in [convs] if isinstance(convs, str) else list(convs or ()):
        for candidate in (conv, conv.replace(".", "_", 1), f"model.{conv}"):
            if isinstance(modules.get(candidate), nn.Conv2d):
                found.append(candidate)
                break
    return tuple(found)


def encoder_first_convs(genotype: Genotype, plan: NetworkPlan) -> tuple[str, ...]:
    """The network's module paths of its encoders' ``image_convs``, each encoder built (and checked) on the
    meta device: what a cfg names before the network is built."""
    names: list[str] = []
    for name, levels in plan.encoder_levels().items():
        encoder = genotype.encoders[name]
        module = _on_meta(functools.partial(create_encoder, name, encoder, levels, plan.in_chans))
        names += [f"encoders.{name}.{conv}" for conv in image_convs(module, encoder.model)]
    return tuple(names)


def encoder_errors(genotype: Genotype) -> Iterator[SpecError]:
    """What only timm can check (``TIMM_CHECKS``), one error per encoder, each built on the meta device:
    the model name, its kwargs, and every level's existence, reduction and channels."""
    plan = lower(genotype)
    for name, levels in plan.encoder_levels().items():
        try:
            _on_meta(functools.partial(create_encoder, name, genotype.encoders[name], levels, plan.in_chans))
        except SpecError as e:
            yield e
