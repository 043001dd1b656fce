"""What differs between two specs: identity, cells, encoders, network, head, defaults and sizes, in words.

Cells and encoders are matched by name, nodes by id, steps, edges, slots and paths by position; every other
field is compared as it is in the full (defaults included) JSON form, so an omitted default and an
explicit one are the same. Each change carries a JSON pointer into the spec it is read from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from rspnet_zoo.errors import pointer
from rspnet_zoo.spec.io import spec_sha256
from rspnet_zoo.spec.models import Genotype
from rspnet_zoo.textutil import shorten

SECTIONS = ("identity", "cells", "encoders", "network", "head", "defaults")
IDENTITY = ("name", "version", "format_version", "description", "provenance")


@dataclass(frozen=True)
class Change:
    section: str
    kind: str  # 'added' | 'removed' | 'changed'
    where: str  # in words: "cell 'normal', step 2, edge 0, op"
    pointer: str  # into B for 'added' and 'changed', into A for 'removed'
    a: Any
    b: Any

    @property
    def words(self) -> str:
        if self.kind == "added":
            return f"{self.where}: added ({_summary(self.b)})"
        if self.kind == "removed":
            return f"{self.where}: removed ({_summary(self.a)})"
        return f"{self.where}: {_summary(self.a)} -> {_summary(self.b)}"


def diff_specs(a: Genotype, b: Genotype, stats: Callable[[Genotype], dict[str, int]] | None = None) -> dict[str, Any]:
    """Every change from ``a`` to ``b`` and, given ``stats`` (``rspnet_zoo.zoo.stats.spec_stats``: counting
    builds the network, so it comes from a layer with torch), both specs' parameters and FLOPs."""
    da, db = a.model_dump(mode="json"), b.model_dump(mode="json")
    changes: list[Change] = []
    for key in IDENTITY:
        _walk(changes, "identity", da.get(key), db.get(key), [key], [key], [_label(key)])
    for section, noun in (("cells", "cell"), ("encoders", "encoder")):
        for name in _union(da[section], db[section]):
            where = [section, name]
            _walk(changes, section, da[section].get(name), db[section].get(name), where, where, [f"{noun} '{name}'"])
    nodes_a = {n["id"]: (i, n) for i, n in enumerate(da["network"]["nodes"])}
    nodes_b = {n["id"]: (i, n) for i, n in enumerate(db["network"]["nodes"])}
    for node_id in _union(nodes_a, nodes_b):
        ia, na = nodes_a.get(node_id, (None, None))
        ib, nb = nodes_b.get(node_id, (None, None))
        _walk(changes, "network", na, nb, ["network", "nodes", ia], ["network", "nodes", ib], [f"node '{node_id}'"])
    _walk(changes, "head", da["head"], db["head"], ["head"], ["head"], ["head"])
    _walk(changes, "defaults", da["defaults"], db["defaults"], ["defaults"], ["defaults"], ["defaults"])
    result: dict[str, Any] = {
        "a": {"name": a.name, "sha256": spec_sha256(a)},
        "b": {"name": b.name, "sha256": spec_sha256(b)},
        "identical": spec_sha256(a) == spec_sha256(b),
        "changes": [dict(asdict(c), words=c.words) for c in changes],
    }
    if stats is not None:
        sa, sb = stats(a), stats(b)
        result["sizes"] = {k: {"a": sa[k], "b": sb[k], "delta": sb[k] - sa[k]} for k in sa}
    return result


def _union(a: dict, b: dict) -> list:
    return list(a) + [k for k in b if k not in a]


def _walk(out: list[Change], section: str, a: Any, b: Any, at_a: list, at_b: list, where: list[str]) -> None:
    if a == b:
        return
    if a is None or b is None or type(a) is not type(b) or not isinstance(a, (dict, list)) or _atomic(a):
        kind = "added" if a is None else "removed" if b is None else "changed"
        if kind != "changed" and not isinstance(a if b is None else b, (dict, list)):
            kind = "changed"  # an optional scalar set or unset reads better as a change
        out.append(Change(section, kind, ", ".join(where), pointer(*(at_a if kind == "removed" else at_b)), a, b))
        return
    if isinstance(a, dict):
        for key in _union(a, b):
            _walk(out, section, a.get(key), b.get(key), at_a + [key], at_b + [key], where + [_label(key)])
        return
    for i in range(max(len(a), len(b))):
        _walk(
            out,
            section,
            a[i] if i < len(a) else None,
            b[i] if i < len(b) else None,
            at_a + [i],
            at_b + [i],
            where[:-1] + [_item(str(at_b[-1]), i)],
        )


def _atomic(value: Any) -> bool:
    """Edges and paths read best as one change: 'sep_conv_3x3 of state 1 -> dil_conv_3x3 of state 2'."""
    return isinstance(value, dict) and (set(value) == {"input", "op"} or set(value) == {"node", "weight", "via"})


_ITEMS = {
    "steps": "step",
    "edges": "edge",
    "inputs": "input",
    "paths": "path",
    "concat": "concat entry",
    "class_names": "class name",
    "rates": "rate",
    "via": "via entry",
    "mean": "mean",
    "std": "std",
    "input_size": "input size",
}


def _label(key: str) -> str:
    return key.replace("_", " ")


def _item(container: str, i: int) -> str:
    return f"{_ITEMS.get(container, _label(container))} {i}"


def _summary(value: Any) -> str:
    """A short description of a value: nodes, cells and edges in words, the rest as compact JSON."""
    if isinstance(value, dict):
        if "id" in value and "reduction" in value:
            kind = f"cell '{value['cell']}'" if value.get("cell") else f"layer {value.get('layer')}"
            reads = ", ".join(p["node"] for s in value.get("inputs", []) for p in s["paths"])
            return f"{kind} at 1/{value['reduction']}, {value['channels']} channels, reads {reads}"
        if "steps" in value:
            ops = ", ".join(e["op"] for s in value["steps"] for e in s["edges"])
            n = len(value["steps"])
            return f"{n} step{'s' if n != 1 else ''}: {ops}; concat {value['concat']}"
        if set(value) == {"input", "op"}:
            return f"{value['op']} of state {value['input']}"
        if set(value) == {"node", "weight", "via"}:
            via = "".join(f" via 1/{r}" for r in value["via"] or ())
            return value["node"] + via + ("" if value["weight"] is None else f" weight {value['weight']:g}")
    text = "none" if value is None else value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return shorten(text, 80)


def size_words(sizes: dict[str, dict[str, int]] | None) -> list[str]:
    if not sizes:
        return []
    p, f = sizes["parameters"], sizes["flops"]
    return [
        f"parameters: {p['a']:,} -> {p['b']:,} ({p['delta']:+,})",
        f"FLOPs at each spec's input size: {f['a'] / 1e9:.2f} G -> {f['b'] / 1e9:.2f} G",
    ]
