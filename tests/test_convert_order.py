"""Same-shaped tensors land where the reference has them.

Every reference key gets its own constant; on a constant input an op's centre pixel is then a function
of those constants, written out here from the reference's layer order (FIDELITY.md). A swap of two
same-shaped edges, or of two convs inside one op, changes the number.
"""

from __future__ import annotations

import math

import pytest
import torch
from reference_checkpoints import reference_layout

from rspnet_zoo.interop.conversions import families, node_index
from rspnet_zoo.interop.convert import to_zoo
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.zoo.catalog import SHIPPED

EPS = 1e-5


def converted(name: str):
    """(our model with every reference key set to its own constant, key -> constant)."""
    layout = reference_layout(name)
    aux = any(r.key.startswith("auxiliary_head.") for r in layout.rows)
    # distinct values in [0.5, 1.5), weights divided by their fan-in so that activations stay near 1 and
    # the BN statistics weigh as much as the products (a product of two swapped convs would hide otherwise)
    const = {r.key: (0.5 + (i * 0.6180339887) % 1) / math.prod(r.shape[1:] or (1,)) for i, r in enumerate(layout.rows)}
    for alias, primary in layout.aliases.items():
        const[alias] = const[primary]
    reference = {r.key: torch.full(r.shape, const[r.key], dtype=torch.float32).to(r.dtype) for r in layout.rows}
    genotype = SHIPPED[name]
    model = GenotypeNet(genotype, aux_head=aux).eval()
    family = families()[layout.family]
    state, _ = to_zoo(family.layout(genotype, aux), model.state_dict(), reference, name)
    model.load_state_dict(state)
    return model, const, node_index(genotype)


def bn(v: float, c: dict, prefix: str) -> float:
    mean, var = c[f"{prefix}.running_mean"], c[f"{prefix}.running_var"]
    return (v - mean) / math.sqrt(var + EPS) * c[f"{prefix}.weight"] + c[f"{prefix}.bias"]


def relu(v: float) -> float:
    return max(v, 0.0)


def darts_sep_conv(c: dict, op: str, chs: int, k: int, x: float = 1.0) -> float:
    """ReLU -> dw kxk -> pw -> BN -> ReLU -> dw kxk -> pw -> BN, at a pixel whose window is all inside."""
    h = chs * c[f"{op}.op.2.weight"] * k * k * c[f"{op}.op.1.weight"] * relu(x)
    h = relu(bn(h, c, f"{op}.op.3"))
    return bn(chs * c[f"{op}.op.6.weight"] * k * k * c[f"{op}.op.5.weight"] * h, c, f"{op}.op.7")


def centre(module: torch.nn.Module, shape: tuple[int, ...], value: float = 1.0) -> torch.Tensor:
    with torch.no_grad():
        out = module(torch.full(shape, value))
    return out[0, :, out.shape[-2] // 2, out.shape[-1] // 2]


def test_darts_edges_and_factorized_reduce_keep_their_tensors():
    model, c, index = converted("darts_v2_cifar")
    cell0 = model.nodes[index["cell0"]]
    # step 0 of the V2 normal cell: two sep_conv_3x3 edges, genotype pairs 0 (reads s0) and 1 (reads s1)
    for k in (0, 1):
        got = centre(cell0.body.ops[k], (1, 36, 9, 9))
        assert got == pytest.approx(torch.full((36,), darts_sep_conv(c, f"cells.0._ops.{k}", 36, 3)), rel=1e-5)
    # cell 7 follows a reduction: preprocess0 is FactorizedReduce, conv_1 -> channels 0..35, conv_2 -> 36..71
    reduce = model.nodes[index["cell7"]].inputs[0].paths[0].proj
    got = centre(reduce, (1, 144, 8, 8))
    p = "cells.7.preprocess0"
    assert got[0].item() == pytest.approx(bn(144 * c[f"{p}.conv_1.weight"], c, f"{p}.bn"), rel=1e-5)
    assert got[36].item() == pytest.approx(bn(144 * c[f"{p}.conv_2.weight"], c, f"{p}.bn"), rel=1e-5)


def test_darts_auxiliary_head_keeps_its_tensors():
    model, c, _ = converted("darts_v2_cifar")
    features = model.aux_head.features  # ReLU, AvgPool 5/3, conv 1x1, BN, ReLU, conv 2x2, BN, ReLU
    with torch.no_grad():
        out = features(torch.ones(1, 576, 8, 8))
    h = relu(bn(576 * c["auxiliary_head.features.2.weight"], c, "auxiliary_head.features.3"))
    h = relu(bn(4 * 128 * c["auxiliary_head.features.5.weight"] * h, c, "auxiliary_head.features.6"))
    assert out.flatten()[0].item() == pytest.approx(h, rel=1e-5)


def test_autodeeplab_run_time_pairing_and_aspp_rates():
    model, c, index = converted("autodeeplab_s")
    cell0 = model.nodes[index["cell0"]]
    # rows 8 and 9 of the cell: _ops.8 is the full dil_conv_5x5 (dilation 2), _ops.9 the sep_conv_5x5
    got = centre(cell0.body.ops[8], (1, 20, 17, 17))
    expected = bn(25 * 20 * c["backbone.cells.0._ops.8.op.1.weight"], c, "backbone.cells.0._ops.8.op.2")
    assert got[0].item() == pytest.approx(expected, rel=1e-5)
    got = centre(cell0.body.ops[9], (1, 20, 17, 17))
    assert got[0].item() == pytest.approx(darts_sep_conv(c, "backbone.cells.0._ops.9", 20, 5), rel=1e-5)
    # On a 25x25 map the centre sees all 9 taps at dilation 12, only its own at 24 and 36.
    for branch, (ref, taps) in enumerate([("aspp1", 1), ("aspp2", 9), ("aspp3", 1), ("aspp4", 1)]):
        got = centre(model.decoder.aspp.branches[branch], (1, 200, 25, 25))
        expected = relu(bn(taps * 200 * c[f"aspp.{ref}.atrous_conv.weight"], c, f"aspp.{ref}.bn"))
        assert got[0].item() == pytest.approx(expected, rel=1e-5), ref


def nas_segm_sep_conv(c: dict, op: str, chs: int, k: int) -> float:
    """Two units of dw kxk -> pw -> BN -> ReLU, no leading ReLU."""
    h = 1.0
    for unit in (0, 1):
        p = f"{op}.op.sep_{unit}"
        h = relu(bn(chs * c[f"{p}.1.weight"] * k * k * c[f"{p}.0.weight"] * h, c, f"{p}.2"))
    return h


def test_nas_segm_ops_and_psum_vectors_keep_their_tensors():
    model, c, index = converted("nas_segm_arch1")
    block0 = model.nodes[index["block0"]].body  # template [sep_conv_5x5, sep_conv_5x5, psum] on 32 channels
    for e in (0, 1):
        got = centre(block0.ops[e], (1, 32, 9, 9))
        assert got[0].item() == pytest.approx(nas_segm_sep_conv(c, f"decoder._ops.0.{e}", 32, 5), rel=1e-5)
    with torch.no_grad():
        out = block0.aggregates[0]([torch.ones(1, 32, 4, 4), torch.full((1, 32, 4, 4), 2.0)])
    assert out[0, 0, 0, 0].item() == pytest.approx(c["decoder._ops.0.2.a"] + 2 * c["decoder._ops.0.2.b"], rel=1e-6)
    got = centre(model.classifier, (1, 64, 5, 5))  # conv_clf: 3x3 with a bias
    expected = 9 * 64 * c["decoder.conv_clf.weight"] + c["decoder.conv_clf.bias"]
    assert got[0].item() == pytest.approx(expected, rel=1e-5)
