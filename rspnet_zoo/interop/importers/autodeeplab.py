"""Auto-DeepLab (NoamRosenberg/autodeeplab at a5b5710): a network path of levels and a cell of
``[edge_index, op_index]`` rows -> the DeepLab model with ASPP and the DeepLabv3+ decoder.

Level l is stride 4 * 2^l with C = F * 2^l. Cell i reads h_p (cell i-1's output) and h_pp (cell i-2's
output as cell i-1 resized it), both resampled bilinearly to its level; the stem is three biased
3x3 convs. The cell's rows give two edges per step, numbered consecutively over each step's
candidate inputs [s0, s1, n0, ...]. a5b5710 builds a step's ops in row order but applies them in
ascending edge order, so each step pairs its ops (in row order) with its inputs (ascending): the
run-time pairing, which is what the spec records.
"""

from __future__ import annotations

from typing import Any

from rspnet_zoo.interop.importers import GenotypeImportError, int_list, literal
from rspnet_zoo.spec.constants import CITYSCAPES_CLASSES
from rspnet_zoo.spec.io import genotype_from_dict
from rspnet_zoo.spec.models import Genotype

# a5b5710's op indices (its genotypes.PRIMITIVES), named as the ops table names them: its dil_conv
# is a full (not separable) dilated conv.
OP_NAMES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "full_dil_conv_3x3",
    "full_dil_conv_5x5",
)
MAX_LEVEL = 3
STEM = (("stem0", 2, 64), ("stem1", 2, 64), ("stem2", 4, 128))
PATH_EXPECTED = "a network path of levels 0..3, comma-separated, starting at 0 and moving at most one level per cell"
CELL_EXPECTED = "a cell as a list of [edge_index, op_index] rows, two per step, e.g. [[0, 7], [1, 4], ...]"


def parse_path(text: str) -> list[int]:
    source = text.strip()
    levels = int_list(literal(source if source.startswith("[") else f"[{source}]", PATH_EXPECTED), PATH_EXPECTED)
    if not levels or levels[0] != 0:
        raise GenotypeImportError(f"expected {PATH_EXPECTED}; the path must start at level 0, got {levels[:1]}")
    for i, level in enumerate(levels):
        if not 0 <= level <= MAX_LEVEL:
            raise GenotypeImportError(f"path[{i}] = {level}: levels are 0..{MAX_LEVEL}")
        if i and abs(level - levels[i - 1]) > 1:
            raise GenotypeImportError(
                f"path[{i}] = {level}: a cell moves at most one level from the previous ({levels[i - 1]})"
            )
    return levels


def parse_cell(text: str) -> list[list[tuple[int, str]]]:
    """Per step, its (input state, op) edges in the run-time pairing."""
    rows = literal(text, CELL_EXPECTED)
    if not isinstance(rows, (list, tuple)) or not rows or len(rows) % 2:
        raise GenotypeImportError(f"expected {CELL_EXPECTED}; got an odd or empty list")
    rows = [int_list(row, CELL_EXPECTED) for row in rows]
    steps = []
    offset = 0
    for b in range(len(rows) // 2):
        candidates = 2 + b
        pair = rows[2 * b : 2 * b + 2]
        for r, row in enumerate(pair):
            if len(row) != 2:
                raise GenotypeImportError(f"cell row {2 * b + r}: expected [edge_index, op_index], got {row}")
            edge, op = row
            if not offset <= edge < offset + candidates:
                raise GenotypeImportError(
                    f"cell row {2 * b + r}: step {b} owns edges {offset}..{offset + candidates - 1}, got {edge}"
                )
            if not 0 <= op < len(OP_NAMES):
                raise GenotypeImportError(f"cell row {2 * b + r}: op index {op} is not in 0..{len(OP_NAMES) - 1}")
        if pair[0][0] == pair[1][0]:
            raise GenotypeImportError(f"cell rows {2 * b} and {2 * b + 1} both choose edge {pair[0][0]}")
        inputs = sorted(edge - offset for edge, _ in pair)
        steps.append([(state, OP_NAMES[op]) for state, (_, op) in zip(inputs, pair)])
        offset += candidates
    return steps


def autodeeplab_spec(
    path: list[int],
    cell: list[list[tuple[int, str]]],
    filter_multiplier: int = 20,
    num_classes: int = 19,
    name: str | None = None,
    description: str | None = None,
) -> Genotype:
    f = filter_multiplier
    if not 1 <= f <= 256:
        raise GenotypeImportError(f"filter multiplier must be in 1..256, got {f}")
    nodes: list[dict[str, Any]] = []
    for i, (node_id, reduction, channels) in enumerate(STEM):
        nodes.append(
            {
                "id": node_id,
                "layer": "conv",
                "args": {"bias": True},
                "reduction": reduction,
                "channels": channels,
                "inputs": [{"paths": [{"node": STEM[i - 1][0] if i else "input"}]}],
            }
        )
    # (node id, reduction) of the outputs cell i reads as h_pp and h_p, oldest first
    history = [("stem1", 2), ("stem2", 4)]
    for i, level in enumerate(path):
        reduction = 4 * 2**level
        (pp, pp_red), (p, p_red) = history[-2], history[-1]
        h_pp: dict[str, Any] = {"node": pp}
        if p_red not in (pp_red, reduction):
            h_pp["via"] = [p_red]  # h_pp is h_p of the previous cell after that cell's resize
        nodes.append(
            {
                "id": f"cell{i}",
                "cell": "cell",
                "reduction": reduction,
                "channels": f * 2**level,
                "downsample": "bilinear",
                "inputs": [{"paths": [h_pp]}, {"paths": [{"node": p}]}],
            }
        )
        history.append((f"cell{i}", reduction))
    steps = [{"edges": [{"input": state, "op": op} for state, op in step]} for step in cell]
    doc = {
        "format_version": 1,
        "name": name or "autodeeplab",
        "description": description or f"An Auto-DeepLab path and cell (F={f}) with ASPP and the DeepLabv3+ decoder.",
        "provenance": {
            "searcher": "imported",
            "dataset": "cityscapes",
            "notes": f"path {path}, cell (run-time pairing) {[[list(e) for e in s] for s in cell]}",
        },
        "cells": {"cell": {"steps": steps, "concat": list(range(2, 2 + len(cell)))}},
        "network": {"nodes": nodes},
        "head": {
            "type": "deeplabv3plus",
            "input": f"cell{len(path) - 1}",
            "low_level": "cell0",
            "upsample": "bilinear_align_corners",
        },
        "defaults": {
            "num_classes": num_classes,
            "input_size": [3, 1025, 2049],
            **({"class_names": list(CITYSCAPES_CLASSES)} if num_classes == len(CITYSCAPES_CLASSES) else {}),
        },
    }
    return genotype_from_dict(doc)
