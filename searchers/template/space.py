"""The action space of the template-based search (Nekrasov et al., WACV 2020) and its decoding.

An action string is the flat list of integers the controller emits, one decision per position:

- M templates, each ``[op_1, op_2, agg]``: two of the 6 nas-segm ops and sum (0) or concat (1);
  ordered pairs, which describe 42 unique templates up to the order of the two operands;
- N blocks, each ``[loc_1, loc_2, id_T, k - 1]`` and, for the first ``N // 2`` blocks only, a stride
  exponent (0: stride 1, 1: stride 2); ``loc`` indexes the sampling pool ``[l1, l2, block 0, ...]``.

It maps one to one onto the nas-segm encoding ``[templates, blocks]`` (blocks as ``[pos1, pos2,
template, repeats - 1, stride_exp]``), and decoding goes through the importer's ``nas_segm_spec``: one
decoder for published and searched architectures, so the resize rule (smaller size in the first half,
larger in the second), the repeats and the strides mean the same in both.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import torch

from rspnet_zoo.errors import SpecError, ZooError
from rspnet_zoo.interop.importers.nas_segm import AGGREGATIONS, POOL, nas_segm_spec
from rspnet_zoo.nn.ops import NAS_SEGM_OPS
from rspnet_zoo.spec.models import Genotype
from searchers.template.budgets import TemplateBudget

Actions = tuple[int, ...]
Config = tuple[list[list[int]], list[list[int]]]

TEMPLATE_FIELDS = ("op_1", "op_2", "agg")


@dataclass(frozen=True)
class TemplateSpace:
    """M templates and N blocks; repeats k in 1..max_repeats; strides predicted for the first half."""

    templates: int = 3
    blocks: int = 7
    max_repeats: int = 4

    @classmethod
    def of(cls, budget: TemplateBudget) -> TemplateSpace:
        """The space a budget searches."""
        return cls(budget.templates, budget.blocks, budget.max_repeats)

    def __post_init__(self):
        if self.templates < 1 or self.blocks < 1 or self.max_repeats < 1:
            raise ZooError("the template space needs at least one template, one block and one repeat")

    @property
    def strided_blocks(self) -> int:
        return self.blocks // 2

    def positions(self) -> list[tuple[str, int]]:
        """(name, number of choices) of every position of the action string, in emission order."""
        out = [(f"t{i}.{f}", n) for i in range(self.templates) for f, n in zip(TEMPLATE_FIELDS, self.template_sizes)]
        for j in range(self.blocks):
            pool = len(POOL) + j
            out += [(f"b{j}.loc_1", pool), (f"b{j}.loc_2", pool), (f"b{j}.id_T", self.templates)]
            out.append((f"b{j}.k", self.max_repeats))
            if j < self.strided_blocks:
                out.append((f"b{j}.stride", 2))
        return out

    @property
    def template_sizes(self) -> tuple[int, int, int]:
        return (len(NAS_SEGM_OPS), len(NAS_SEGM_OPS), len(AGGREGATIONS))

    def choices(self) -> tuple[int, ...]:
        return tuple(n for _, n in self.positions())

    def unique_templates(self) -> int:
        """Templates up to the order of their two operands: 21 op pairs x 2 aggregations = 42."""
        ops = range(len(NAS_SEGM_OPS))
        return len(set(itertools.combinations_with_replacement(ops, 2))) * len(AGGREGATIONS)

    def check(self, actions: Actions) -> Actions:
        actions = tuple(int(a) for a in actions)
        positions = self.positions()
        if len(actions) != len(positions):
            raise ZooError(f"an action string of this space has {len(positions)} positions, not {len(actions)}")
        for (name, n), a in zip(positions, actions):
            if not 0 <= a < n:
                raise ZooError(f"action {name} = {a}: expected 0..{n - 1}")
        return actions

    def to_config(self, actions: Actions) -> Config:
        """The nas-segm encoding ``[templates, blocks]`` of an action string."""
        rest = list(self.check(actions))
        templates = [[rest.pop(0) for _ in range(3)] for _ in range(self.templates)]
        blocks = []
        for j in range(self.blocks):
            loc_1, loc_2, t, k = (rest.pop(0) for _ in range(4))
            stride_exp = rest.pop(0) if j < self.strided_blocks else 0
            blocks.append([loc_1, loc_2, t, k, stride_exp])
        return templates, blocks

    def from_config(self, templates: list[list[int]], blocks: list[list[int]]) -> Actions:
        """The action string of a nas-segm ``[templates, blocks]``; refuses what this space cannot emit."""
        if len(templates) != self.templates or len(blocks) != self.blocks:
            raise ZooError(
                f"this space has {self.templates} templates and {self.blocks} blocks, "
                f"not {len(templates)} and {len(blocks)}"
            )
        actions: list[int] = [a for t in templates for a in t]
        for j, (pos1, pos2, t, repeats, stride_exp) in enumerate(blocks):
            actions += [pos1, pos2, t, repeats]
            if j < self.strided_blocks:
                actions.append(stride_exp)
            elif stride_exp:
                raise ZooError(
                    f"block {j} = {blocks[j]}: strides are predicted for blocks 0..{self.strided_blocks - 1}"
                )
        return self.check(actions)

    @functools.lru_cache(maxsize=1 << 16)  # noqa: B019 (spaces are few, frozen and live as long as the process)
    def allowed(self, position: int, prefix: Actions) -> tuple[bool, ...] | None:
        """Which choices of ``position`` may follow ``prefix`` (None: all). Stride 2 is refused where the
        block would end below 1/64 (the spec's deepest reduction): the published ops apply the stride
        in every repeat, and a separable conv applies it twice."""
        name, n = self.positions()[position]
        if not name.endswith(".stride"):
            return None
        # later positions 0: blocks that read l1 twice, which change no earlier reduction
        rest = list(prefix) + [1] + [0] * (len(self.positions()) - position - 1)
        try:
            self.decode(tuple(rest))
        except SpecError:
            return (True, False)
        return None

    def sample(self, generator: torch.Generator) -> Actions:
        """One action string, every position uniform over its allowed choices (the random-search baseline)."""
        actions: list[int] = []
        for position, n in enumerate(self.choices()):
            mask = self.allowed(position, tuple(actions))
            options = [i for i in range(n) if mask is None or mask[i]]
            actions.append(options[int(torch.randint(len(options), (), generator=generator))])
        return tuple(actions)

    def downsampling(self, actions: Actions) -> int:
        """2 ** (stride-2 blocks): the factor the generated part adds to the stem's (paper, Fig. 6)."""
        return 2 ** sum(b[4] for b in self.to_config(actions)[1])

    def decode(self, actions: Actions, **options: Any) -> Genotype:
        """The spec of an action string; ``options`` go to ``nas_segm_spec`` (name, num_classes, ...)."""
        templates, blocks = self.to_config(actions)
        return nas_segm_spec(templates, blocks, **options)


def config_text(config: Config) -> str:
    """The nas-segm encoding as the importer reads it (and as the shipped specs' provenance records it)."""
    return str([config[0], config[1]])
