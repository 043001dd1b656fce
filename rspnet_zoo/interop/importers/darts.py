"""DARTS-family genotypes (DARTS, PC-DARTS, ...): ``Genotype(normal=[(op, input), ...], normal_concat=...,
reduce=[...], reduce_concat=...)`` -> the CIFAR or ImageNet evaluation network of quark0/darts.

Pairs 2i and 2i+1 are the edges of intermediate node i (state i+2); states 0 and 1 are the two cell
inputs. Reduction cells sit at layers//3 and 2*layers//3 and double C; the auxiliary head reads the
second one. Preprocessing (ReLU-conv-BN, or FactorizedReduce after a reduction) follows from the
nodes' resolutions, so the spec needs nothing beyond the graph.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from rspnet_zoo.interop.importers import MAX_ENCODING_CHARS, GenotypeImportError, _clip, int_list
from rspnet_zoo.nn.ops import OPS
from rspnet_zoo.spec.io import genotype_from_dict
from rspnet_zoo.spec.models import Genotype

FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
EXPECTED = "Genotype(normal=[(op, input), ...], normal_concat=[...], reduce=[...], reduce_concat=[...])"

CIFAR_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass(frozen=True)
class NetworkDefaults:
    channels: int
    layers: int
    num_classes: int
    dataset: str


NETWORKS = {
    "cifar": NetworkDefaults(channels=36, layers=20, num_classes=10, dataset="cifar10"),
    "imagenet": NetworkDefaults(channels=48, layers=14, num_classes=1000, dataset="imagenet"),
}


@dataclass(frozen=True)
class DartsGenotype:
    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]

    def __str__(self) -> str:
        return (
            f"Genotype(normal={self.normal}, normal_concat={self.normal_concat}, "
            f"reduce={self.reduce}, reduce_concat={self.reduce_concat})"
        )


def parse_genotype(text: str) -> DartsGenotype:
    """Parse the repr of DARTS's ``Genotype`` namedtuple (optionally ``NAME = Genotype(...)``)."""
    source = text.strip()
    if len(source) > MAX_ENCODING_CHARS:
        raise GenotypeImportError(f"expected {EXPECTED}; got {len(source)} characters")
    try:
        tree = ast.parse(source, mode="exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise GenotypeImportError(f"expected {EXPECTED}; got {_clip(source)}") from None
    call = _genotype_call(tree)
    if call is None:
        raise GenotypeImportError(f"expected {EXPECTED}; got {_clip(source)}")
    if len(call.args) > len(FIELDS):
        raise GenotypeImportError(
            f"Genotype takes {len(FIELDS)} fields ({', '.join(FIELDS)}), got {len(call.args)} positional"
        )
    values: dict[str, Any] = dict(zip(FIELDS, call.args))
    for kw in call.keywords:
        if kw.arg not in FIELDS or kw.arg in values:
            raise GenotypeImportError(
                f"Genotype field '{kw.arg}' is unknown or given twice (fields: {', '.join(FIELDS)})"
            )
        values[kw.arg] = kw.value
    missing = [f for f in FIELDS if f not in values]
    if missing:
        raise GenotypeImportError(f"Genotype lacks {', '.join(missing)}; expected {EXPECTED}")
    parsed = {name: _value(name, node) for name, node in values.items()}
    genotype = DartsGenotype(
        normal=_edges("normal", parsed["normal"]),
        normal_concat=int_list(parsed["normal_concat"], "normal_concat as a list of state indices or range(a, b)"),
        reduce=_edges("reduce", parsed["reduce"]),
        reduce_concat=int_list(parsed["reduce_concat"], "reduce_concat as a list of state indices or range(a, b)"),
    )
    for name in ("normal", "reduce"):
        edges, concat = getattr(genotype, name), getattr(genotype, f"{name}_concat")
        states = 2 + len(edges) // 2
        for k, (op, inp) in enumerate(edges):
            if not 0 <= inp < 2 + k // 2:
                raise GenotypeImportError(
                    f"{name}[{k}] = ({op!r}, {inp}): node {k // 2} can read states 0..{1 + k // 2}"
                )
        bad = [c for c in concat if not 0 <= c < states]
        if bad or not concat or len(set(concat)) != len(concat):
            raise GenotypeImportError(f"{name}_concat = {concat}: expected distinct states among 0..{states - 1}")
    return genotype


def _genotype_call(tree: ast.Module) -> ast.Call | None:
    if len(tree.body) != 1:
        return None
    stmt = tree.body[0]
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        value = stmt.value
    elif isinstance(stmt, ast.Expr):
        value = stmt.value
    else:
        return None
    if not isinstance(value, ast.Call):
        return None
    func = value.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return value if name == "Genotype" else None


def _value(name: str, node: ast.expr) -> Any:
    """A literal, or ``range(a[, b])`` with literal integer bounds (how genotypes.py writes concat lists)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" and not node.keywords:
        bounds = [_value(name, a) for a in node.args]
        if not 1 <= len(bounds) <= 2 or not all(isinstance(b, int) and 0 <= b <= 64 for b in bounds):
            raise GenotypeImportError(f"{name}: expected range(a, b) with small integer bounds")
        return list(range(*bounds))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise GenotypeImportError(f"{name}: expected a literal, got {_clip(ast.unparse(node))}") from None


def _edges(name: str, value: Any) -> list[tuple[str, int]]:
    expected = f"{name} as a list of (op, input) pairs, two per node"
    if not isinstance(value, (list, tuple)) or not value or len(value) % 2:
        raise GenotypeImportError(f"expected {expected}; got {_clip(repr(value))}")
    edges = []
    for k, pair in enumerate(value):
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or not isinstance(pair[1], int)
            or isinstance(pair[1], bool)
        ):
            raise GenotypeImportError(f"{name}[{k}]: expected an (op, input) pair, got {_clip(repr(pair))}")
        if pair[0] not in OPS:
            raise GenotypeImportError(f"{name}[{k}]: unknown op '{pair[0]}' (known: {', '.join(sorted(OPS))})")
        edges.append((pair[0], pair[1]))
    return edges


def _cell(edges: list[tuple[str, int]], concat: list[int], reduction: bool) -> dict:
    steps = [{"edges": [{"op": op, "input": inp} for op, inp in edges[i : i + 2]]} for i in range(0, len(edges), 2)]
    return {"reduction": reduction, "steps": steps, "concat": concat}


def _node(node_id: str, reduction: int, channels: int, *inputs: str, **fields: Any) -> dict:
    return {
        "id": node_id,
        "reduction": reduction,
        "channels": channels,
        "inputs": [{"paths": [{"node": i}]} for i in inputs],
        **fields,
    }


def darts_spec(
    genotype: DartsGenotype,
    network: str = "cifar",
    name: str | None = None,
    channels: int | None = None,
    layers: int | None = None,
    num_classes: int | None = None,
    auxiliary: bool = True,
    description: str | None = None,
) -> Genotype:
    """The evaluation network of ``network`` ('cifar' or 'imagenet') built from ``genotype``."""
    if network not in NETWORKS:
        raise GenotypeImportError(f"unknown network '{network}' (known: {', '.join(NETWORKS)})")
    net = NETWORKS[network]
    c = net.channels if channels is None else channels
    layers = net.layers if layers is None else layers
    num_classes = net.num_classes if num_classes is None else num_classes
    if c < 2 or c % 2:
        raise GenotypeImportError(f"channels must be even and at least 2 (FactorizedReduce halves them), got {c}")
    if layers < 3:
        raise GenotypeImportError(f"layers must be at least 3 (two of them are reduction cells), got {layers}")
    reductions = (layers // 3, 2 * layers // 3)

    if network == "cifar":
        nodes = [_node("stem", 1, 3 * c, "input", layer="conv", args={"act": None})]
        prev_prev = prev = "stem"
        reduction = 1
    else:
        nodes = [
            _node("stem0_0", 2, c // 2, "input", layer="conv"),
            _node("stem0_1", 4, c, "stem0_0", layer="conv", args={"act": None}),
            _node("stem1", 8, c, "stem0_1", layer="conv", args={"act": None, "pre_act": True}),
        ]
        prev_prev, prev = "stem0_1", "stem1"
        reduction = 8
    for i in range(layers):
        if i in reductions:
            c, reduction = 2 * c, 2 * reduction
        cell = "reduce" if i in reductions else "normal"
        nodes.append(_node(f"cell{i}", reduction, c, prev_prev, prev, cell=cell))
        prev_prev, prev = prev, f"cell{i}"

    head: dict[str, Any] = {"type": "classifier", "input": prev}
    if auxiliary:
        head["auxiliary"] = {
            "input": f"cell{reductions[1]}",
            "pool_stride": 3 if network == "cifar" else 2,
            "hidden_norm": network == "cifar",
        }
    defaults: dict[str, Any] = {"num_classes": num_classes}
    if network == "cifar":
        defaults.update(input_size=[3, 32, 32], mean=list(CIFAR_MEAN), std=list(CIFAR_STD))
        if num_classes == len(CIFAR10_CLASSES):
            defaults["class_names"] = CIFAR10_CLASSES
    else:
        defaults["input_size"] = [3, 224, 224]
    doc = {
        "format_version": 1,
        "name": name or f"darts_{network}",
        "description": description
        or (
            f"A DARTS-family genotype in the DARTS {network} evaluation network "
            f"({layers} cells, C={net.channels if channels is None else channels})."
        ),
        "provenance": {"searcher": "imported", "dataset": net.dataset, "notes": str(genotype)},
        "cells": {
            "normal": _cell(genotype.normal, genotype.normal_concat, reduction=False),
            "reduce": _cell(genotype.reduce, genotype.reduce_concat, reduction=True),
        },
        "network": {"nodes": nodes},
        "head": head,
        "defaults": defaults,
    }
    return genotype_from_dict(doc)
