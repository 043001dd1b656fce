"""Checkpoints laid out exactly as the reference implementations save them, from tests/data/reference_state_dicts.

Each TSV lists the reference ``state_dict()`` (key, shape, dtype, param|buffer) in order; its header says
how the published file wraps it (bare, or under 'state_dict' with other top-level keys, maybe with
DataParallel's 'module.' prefix) and which entries alias earlier ones.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import torch

LAYOUTS = Path(__file__).parent / "data" / "reference_state_dicts"
FAMILY = {"darts": "darts", "pc": "darts", "autodeeplab": "autodeeplab", "nas": "nas-segm"}


@dataclass
class Row:
    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    kind: str  # param | buffer


@dataclass
class ReferenceLayout:
    name: str
    rows: list[Row]
    file_name: str  # as the reference's training code names it
    top_level: list[str] | None  # keys of the saved dict, None for a bare state dict
    module_prefix: bool
    aliases: dict[str, str]  # key -> the earlier key whose tensor it is

    @property
    def family(self) -> str:
        return FAMILY[self.name.split("_")[0]]


def reference_layout(name: str) -> ReferenceLayout:
    text = (LAYOUTS / f"{name}.tsv").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    writes = re.search(r"weights_fidelity\.py writes: (\S+) \((.*)\)", header)
    keys = re.search(r"top-level keys (\[.*?\])", writes[2])
    shared = re.search(r"alias entries share storage with earlier keys: (.*)\.$", header, re.MULTILINE)
    aliases = dict(pair.split("=") for pair in shared[1].split(", ")) if shared else {}
    rows = []
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        key, shape, dtype, kind = line.split("\t")
        dims = tuple(int(d) for d in shape.split(",")) if shape else ()
        rows.append(Row(key, dims, getattr(torch, dtype), kind))
    return ReferenceLayout(
        name,
        rows,
        writes[1],
        ast.literal_eval(keys[1]) if keys else None,
        "prefixed 'module.'" in writes[2],
        aliases,
    )


def random_state(layout: ReferenceLayout, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values everywhere, BN variances positive, counters random; aliases share their tensor."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for row in layout.rows:
        if row.key in layout.aliases:
            state[row.key] = state[layout.aliases[row.key]]
        elif row.dtype == torch.int64:
            state[row.key] = torch.randint(0, 10_000, row.shape, generator=g)
        elif row.key.endswith("running_var"):
            state[row.key] = torch.rand(row.shape, generator=g) + 0.5
        else:
            state[row.key] = torch.randn(row.shape, generator=g)
    return state


def save_published(layout: ReferenceLayout, state: dict[str, torch.Tensor], folder: Path) -> Path:
    """The file as the reference training code writes it."""
    if layout.module_prefix:
        state = {f"module.{k}": v for k, v in state.items()}
    obj: object = state
    if layout.top_level is not None:
        extra = {"epoch": 50, "best_acc_top1": 73.3, "best_pred": 0.71, "optimizer": {"state": {}, "param_groups": []}}
        obj = {k: state if k == "state_dict" else extra[k] for k in layout.top_level}
    path = folder / layout.file_name
    torch.save(obj, path)
    return path
