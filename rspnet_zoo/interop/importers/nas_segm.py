"""nas-segm, WACV 2020 template decoder (DrSleep/nas-segm-pytorch): ``[templates, blocks]`` ->
MobileNet-v2's first stages plus the template decoder, 19 classes at 1/4 of the input.

A template ``[op_a, op_b, agg]`` becomes a cell with one step of two edges aggregated by psum or cat.
A block ``[pos1, pos2, template, repeats - 1, stride_exp]`` becomes one template node per repeat:
repeat 0 reads pool[pos1] and pool[pos2] and widens by the stride; repeat r reads repeat r-1's second
input and its output; every repeat applies the stride. The pool is [l1, l2, block 0, block 1, ...];
blocks in the first half resize to the smaller size, the rest to the larger. Block outputs that no
later block reads are the head's inputs; when no block reads l2, the encoder ends at l1.
"""

from __future__ import annotations

from typing import Any

from rspnet_zoo.interop.importers import GenotypeImportError, int_list, literal
from rspnet_zoo.nn.ops import NAS_SEGM_OPS
from rspnet_zoo.spec.constants import CITYSCAPES_CLASSES
from rspnet_zoo.spec.io import genotype_from_dict
from rspnet_zoo.spec.models import Cell, Genotype, Provenance, Template
from rspnet_zoo.spec.plan import cell_layout

AGGREGATIONS = ("psum", "cat")
EXPECTED = (
    "[templates, blocks]: templates as [op_a, op_b, agg] (ops 0..5, agg 0 psum / 1 cat), "
    "blocks as [pos1, pos2, template, repeats - 1, stride_exp]"
)
MAX_REPEATS = 8
MAX_STRIDE_EXP = 2

# MobileNet-v2 up to its 1/8 stage: (id, layer, channels, reduction, expand ratio); l1 and l2 are the
# outputs of the 1/4 and 1/8 stages.
ENCODER = (
    ("layer1", "conv", 32, 2, None),
    ("layer2", "inverted_residual", 16, 2, 1),
    ("layer3_0", "inverted_residual", 24, 4, 6),
    ("layer3_1", "inverted_residual", 24, 4, 6),
    ("layer4_0", "inverted_residual", 32, 8, 6),
    ("layer4_1", "inverted_residual", 32, 8, 6),
    ("layer4_2", "inverted_residual", 32, 8, 6),
)
POOL = ("layer3_1", "layer4_2")


def parse_config(text: str) -> tuple[list[list[int]], list[list[int]]]:
    config = literal(text, EXPECTED)
    if not isinstance(config, (list, tuple)) or len(config) != 2:
        raise GenotypeImportError(f"expected {EXPECTED}")
    templates = [int_list(t, f"template {i} as [op_a, op_b, agg]") for i, t in enumerate(config[0])]
    blocks = [
        int_list(b, f"block {j} as [pos1, pos2, template, repeats - 1, stride_exp]") for j, b in enumerate(config[1])
    ]
    if not templates or not blocks:
        raise GenotypeImportError(f"expected {EXPECTED}; got no templates or no blocks")
    for i, t in enumerate(templates):
        if len(t) != 3 or not all(0 <= op < len(NAS_SEGM_OPS) for op in t[:2]) or t[2] not in (0, 1):
            raise GenotypeImportError(
                f"template {i} = {t}: expected [op_a, op_b, agg] with ops 0..{len(NAS_SEGM_OPS) - 1} and agg 0 or 1"
            )
    for j, b in enumerate(blocks):
        if len(b) != 5:
            raise GenotypeImportError(f"block {j} = {b}: expected [pos1, pos2, template, repeats - 1, stride_exp]")
        pos1, pos2, template, repeats, stride_exp = b
        if not (0 <= pos1 < len(POOL) + j and 0 <= pos2 < len(POOL) + j):
            raise GenotypeImportError(
                f"block {j} = {b}: positions index [l1, l2, block 0..{j - 1}], so 0..{len(POOL) + j - 1}"
            )
        if not 0 <= template < len(templates):
            raise GenotypeImportError(f"block {j} = {b}: template {template} does not exist (0..{len(templates) - 1})")
        if not 0 <= repeats < MAX_REPEATS or not 0 <= stride_exp <= MAX_STRIDE_EXP:
            raise GenotypeImportError(
                f"block {j} = {b}: repeats - 1 must be in 0..{MAX_REPEATS - 1}, stride_exp in 0..{MAX_STRIDE_EXP}"
            )
    return templates, blocks


def nas_segm_spec(
    templates: list[list[int]],
    blocks: list[list[int]],
    agg_size: int = 64,
    num_classes: int = 19,
    name: str | None = None,
    description: str | None = None,
    *,
    provenance: Provenance | None = None,
    input_size: tuple[int, int, int] = (3, 512, 1024),
    class_names: list[str] | None = None,
) -> Genotype:
    """The spec of ``[templates, blocks]``: the one decoder of this encoding, for the importer and for
    the template search (which passes its own provenance, input size and class names)."""
    if class_names is None and num_classes == len(CITYSCAPES_CLASSES):
        class_names = CITYSCAPES_CLASSES
    encoder: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    width: dict[str, int] = {}
    reduction: dict[str, int] = {}
    prev = "input"
    for node_id, layer, channels, red, expand in ENCODER:
        args = {"act": "relu6"} if expand is None else {"expand_ratio": expand}
        encoder.append(
            {
                "id": node_id,
                "layer": layer,
                "args": args,
                "reduction": red,
                "channels": channels,
                "inputs": [{"paths": [{"node": prev}]}],
            }
        )
        width[node_id], reduction[node_id], prev = channels, red, node_id
    cells = {
        f"t{i}": {
            "steps": [
                {
                    "edges": [{"input": 0, "op": NAS_SEGM_OPS[a]}, {"input": 1, "op": NAS_SEGM_OPS[b]}],
                    "aggregate": AGGREGATIONS[agg],
                }
            ],
            "concat": [2],
        }
        for i, (a, b, agg) in enumerate(templates)
    }
    pool = list(POOL)
    unread: list[str] = []
    for j, (pos1, pos2, t, repeats, stride_exp) in enumerate(blocks):
        template = {"stride": 2**stride_exp, "resize": "smaller" if j < len(blocks) // 2 else "larger"}
        for pos in (pos1, pos2):
            if pool[pos] in unread:
                unread.remove(pool[pos])
        x_a, x_b = pool[pos1], pool[pos2]
        for r in range(repeats + 1):
            node_id = f"block{j}" if r == repeats else f"block{j}_r{r}"
            args = Template(widen=r == 0, **template)
            layout = cell_layout(
                Cell.model_validate(cells[f"t{t}"]),
                [width[x_a], width[x_b]],
                [reduction[x_a], reduction[x_b]],
                args.stride,
                args,
            )
            width[node_id], reduction[node_id] = layout.widths[-1], layout.reductions[-1]
            nodes.append(
                {
                    "id": node_id,
                    "cell": f"t{t}",
                    "template": args.model_dump(exclude_defaults=True),
                    "reduction": reduction[node_id],
                    "channels": width[node_id],
                    "inputs": [{"paths": [{"node": x_a}]}, {"paths": [{"node": x_b}]}],
                }
            )
            x_a, x_b = x_b, node_id
        pool.append(f"block{j}")
        unread.append(f"block{j}")
    doc = {
        "format_version": 1,
        "name": name or "nas_segm",
        "description": description or "A nas-segm (WACV 2020) template decoder on MobileNet-v2's first stages.",
        "provenance": (
            provenance.model_dump(exclude_defaults=True)
            if provenance is not None
            else {"searcher": "imported", "dataset": "cityscapes", "notes": str([templates, blocks])}
        ),
        "cells": cells,
        "network": {"nodes": encoder[: _encoder_used(blocks)] + nodes},
        "head": {"type": "concat", "inputs": unread, "channels": agg_size, "classifier_kernel": 3, "upsample": "none"},
        "defaults": {
            "num_classes": num_classes,
            "input_size": list(input_size),
            **({"class_names": list(class_names)} if class_names else {}),
        },
    }
    return genotype_from_dict(doc)


def _encoder_used(blocks: list[list[int]]) -> int:
    """Encoder stages up to the deepest pool output a block reads: when no block reads l2 (the search
    may sample that), the 1/8 stage would reach nothing and is left out."""
    read = {pos for b in blocks for pos in b[:2] if pos < len(POOL)}
    ids = [node[0] for node in ENCODER]
    return 1 + max(ids.index(POOL[pos]) for pos in read)
