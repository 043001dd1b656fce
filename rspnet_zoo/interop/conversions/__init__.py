"""Key mappings between the published reference implementations' state dicts and ours, as data.

Each family module walks a spec and returns a :class:`Layout`: the reference modules in the
reference's ``state_dict()`` order, each renamed to the module of ours that holds the same tensors.
Per-op renames are small tables. One general function (``rspnet_zoo.interop.convert.key_map``) expands a
layout over the tensors our model actually has, so a table names modules, never leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rspnet_zoo.errors import ZooError
from rspnet_zoo.spec.models import Genotype

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConversionError(ZooError):
    """A checkpoint, spec or model that the reference layout does not fit."""


@dataclass(frozen=True)
class Rename:
    """Reference module ``ref`` holds the tensors that our module ``ours`` holds (same leaf names)."""

    ref: str
    ours: str


@dataclass(frozen=True)
class Row:
    """Reference tensor ``ref`` is row ``row`` of our tensor ``ours`` (nas-segm's psum ``a``/``b``)."""

    ref: str
    ours: str
    row: int


@dataclass(frozen=True)
class Alias:
    """Reference module ``ref`` shares its tensors with the earlier reference module ``same_as``."""

    ref: str
    same_as: str


Entry = Rename | Row | Alias


@dataclass
class Layout:
    """One reference network against one spec: its entries in reference order, and how it is published."""

    entries: list[Entry]
    wrapper: str | None = None  # the top-level key the published file keeps the state dict under
    origin: str = ""  # the reference code, repository@commit
    cfg: dict[str, Any] = field(default_factory=dict)  # pretrained_cfg facts: normalisation, crop
    notes: tuple[str, ...] = ()  # preprocessing and output facts for the card


@dataclass(frozen=True)
class Family:
    name: str
    version: str  # bumped whenever a mapping changes what goes where
    layout: Callable[[Genotype, bool], Layout]  # (spec, auxiliary head built?) -> layout
    aux_prefix: str | None = None  # reference keys of an optional auxiliary head


def renames(ref: str, ours: str, table: Iterable[tuple[str, str]]) -> list[Rename]:
    """A table of (reference submodule, our submodule) rows placed under two module prefixes."""
    return [Rename(f"{ref}.{r}" if r else ref, f"{ours}.{o}" if o else ours) for r, o in table]


def node_index(genotype: Genotype) -> dict[str, int]:
    """Node id -> its index in ``nodes.<i>`` of our state dict."""
    return {n.id: i for i, n in enumerate(genotype.network.nodes)}


def require(index: dict[str, int], node_id: str, genotype: Genotype, family: str) -> int:
    if node_id not in index:
        raise ConversionError(f"spec '{genotype.name}' is not a {family} network: it has no node '{node_id}'")
    return index[node_id]


def flat_edges(genotype: Genotype, cell: str) -> list[str]:
    """The ops of a cell's edges in step order: our ``body.ops.<k>`` and the reference ``_ops.<k>``."""
    return [edge.op for step in genotype.cells[cell].steps for edge in step.edges]


def families() -> dict[str, Family]:
    from rspnet_zoo.interop.conversions import autodeeplab, darts, nas_segm

    return {f.name: f for f in (darts.FAMILY, autodeeplab.FAMILY, nas_segm.FAMILY)}
