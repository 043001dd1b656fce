"""The ``dpc`` head (DeepLab's dense prediction cell and decoder) on a small conv backbone: exact parameter
count, forward at odd sizes, optimise/export equal to eager, latency units, and every spec and cell-file
check with its JSON pointer."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from published import DPC_CITYSCAPES

from rspnet_zoo.errors import SpecError
from rspnet_zoo.interop.importers.dpc import dpc_head, in_cell_file, read_cell
from rspnet_zoo.nn.fold import optimize
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.perf.latency import UNITS, plan_units
from rspnet_zoo.spec.heads import HEADS
from rspnet_zoo.spec.io import genotype_from_dict
from rspnet_zoo.spec.plan import lower
from rspnet_zoo.zoo.stats import count_parameters, meta_model

BRANCHES = [{k: v for k, v in b.items() if k != "op"} for b in json.loads(DPC_CITYSCAPES)]
LOW, DEEP, CLASSES = 12, 24, 5  # the backbone's widths at 1/4 and 1/16


def _layer(node_id: str, reduction: int, channels: int, source: str) -> dict:
    return {
        "id": node_id,
        "layer": "conv",
        "reduction": reduction,
        "channels": channels,
        "inputs": [{"paths": [{"node": source}]}],
    }


def small_doc(branches=BRANCHES, **head) -> dict:
    nodes = [_layer("s2", 2, 8, "input"), _layer("s4", 4, LOW, "s2"), _layer("s8", 8, 16, "s4")]
    nodes.append(_layer("s16", 16, DEEP, "s8"))
    return {
        "format_version": 1,
        "name": "small_dpc",
        "network": {"nodes": nodes},
        "head": {
            **dpc_head(copy.deepcopy(branches), "s16", "s4"),
            "branch_channels": 8,
            "projection_channels": 8,
            "low_level_channels": 4,
            "decoder_channels": 8,
            **head,
        },
        "defaults": {"num_classes": CLASSES, "input_size": [3, 64, 64]},
    }


def split_separable(c_in: int, c_out: int, k: int = 3) -> int:
    return k * k * c_in + 2 * c_in + c_in * c_out + 2 * c_out


def test_decoder_parameters_follow_deeplabs_layers():
    g = genotype_from_dict(small_doc())
    model = meta_model(g)
    # branch 0 reads the features (24 ch), the other four an earlier branch (8 ch); then projection 5*8 -> 8
    cell = split_separable(DEEP, 8) + 4 * split_separable(8, 8) + (5 * 8 * 8 + 2 * 8)
    decoder = (LOW * 4 + 2 * 4) + split_separable(8 + 4, 8) + split_separable(8, 8)
    logits = 8 * CLASSES + CLASSES  # 1x1 with bias
    assert count_parameters(model.decoder.dpc) == cell
    assert count_parameters(model.decoder) + count_parameters(model.classifier) == cell + decoder + logits
    plan = lower(g)
    assert HEADS["dpc"].max_parameters(plan.head_inputs, None, g.head, CLASSES) == cell + decoder + logits


def test_branches_dilate_at_their_rates_times_the_multiplier():
    model = GenotypeNet(genotype_from_dict(small_doc(rate_multiplier=2)))
    depthwise = [branch[0][0] for branch in model.decoder.dpc.branches]
    assert [conv.dilation for conv in depthwise] == [(2, 12), (36, 30), (12, 6), (2, 2), (12, 42)]
    assert [conv.padding for conv in depthwise] == [(2, 12), (36, 30), (12, 6), (2, 2), (12, 42)]
    assert all(conv.groups == conv.in_channels for conv in depthwise)


def test_forward_at_odd_sizes_and_optimised_graph_equal_eager():
    torch.manual_seed(0)
    model = GenotypeNet(genotype_from_dict(small_doc())).eval()
    fast = optimize(model)
    for size in [(37, 45), (64, 64), (17, 23)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            y = model(x)
            assert y.shape == (1, CLASSES, *size)
            torch.testing.assert_close(fast(x), y, rtol=1e-4, atol=1e-4)
    assert model.forward_features(x).shape == (1, 8, 5, 6)  # the decoder's 1/4 map (17x23 -> 5x6)


def test_training_mode_drops_concat_features_and_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = GenotypeNet(genotype_from_dict(small_doc())).train()
    model(torch.randn(2, 3, 17, 17)).mean().backward()
    assert model.decoder.dpc.dropout.p == pytest.approx(0.1)
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_onnx_export_matches_eager(tmp_path):
    pytest.importorskip("onnxruntime")
    from rspnet_zoo.interop.export import export_model

    model = GenotypeNet(genotype_from_dict(small_doc())).eval()
    info = export_model(model, "onnx", tmp_path / "small_dpc.onnx", (33, 41))
    assert info["max_abs_diff"] < 1e-4


def test_latency_units_build_the_dpc_decoder():
    g = genotype_from_dict(small_doc())
    units = [u.unit for u in plan_units(lower(g), g, (64, 64)) if u.role == "head"]
    module, inputs = UNITS[units[0].kind](*units[0].args)
    assert module(*inputs).shape == (1, 8, 16, 16)


def _refusal(doc: dict) -> SpecError:
    with pytest.raises(SpecError) as err:
        genotype_from_dict(doc)
    return err.value


def _set(head: dict, keys: tuple, value) -> None:
    for key in keys[:-1]:
        head = head[key]
    head[keys[-1]] = value


@pytest.mark.parametrize(
    "changes, pointer, words",
    [
        ({("branches", 2, "input"): 2}, "/head/branches/2/input", "0..1"),
        ({("branches", 0, "input"): 0}, "/head/branches/0/input", "only -1"),
        ({("branches", 1, "rate"): [0, 3]}, "/head/branches/1/rate/0", "minimum"),
        ({("branches", 1, "kernel"): 2}, "/head/branches/1/kernel", "not allowed"),
        ({("branches", 3, "input"): -2}, "/head/branches/3/input", "minimum"),
        ({("rate_multiplier",): 0}, "/head/rate_multiplier", "minimum"),
        ({("branches",): []}, "/head/branches", "non-empty"),
        ({("branches",): BRANCHES * 4}, "/head/branches", "at most 16"),
        ({("input",): "s4", ("low_level",): "s16"}, "/head/low_level", "coarser"),
    ],
)
def test_each_head_field_is_checked_with_its_pointer(changes, pointer, words):
    doc = small_doc()
    for keys, value in changes.items():
        _set(doc["head"], keys, value)
    err = _refusal(doc)
    assert err.pointer == pointer
    assert words in err.reason


def test_the_low_level_feature_may_be_the_cells_input():
    doc = small_doc()
    doc["head"]["low_level"] = "s16"
    assert genotype_from_dict(doc).head.low_level == "s16"


@st.composite
def cells(draw, valid: bool):
    n = draw(st.integers(1, 6))
    branches = [
        {
            "kernel": draw(st.sampled_from([1, 3, 5])),
            "rate": [draw(st.integers(1, 4)), draw(st.integers(1, 4))],
            "input": draw(st.integers(-1, i - 1)),
        }
        for i in range(n)
    ]
    bad = None
    if not valid:
        bad = draw(st.integers(0, n - 1))
        branches[bad]["input"] = draw(st.integers(bad, 14))
    return branches, bad


@settings(max_examples=25, deadline=None)
@given(cells(valid=True))
def test_any_cell_of_earlier_reads_builds_with_the_exact_count(cell):
    branches, _ = cell
    g = genotype_from_dict(small_doc(branches))
    plan = lower(g)
    model = meta_model(g)
    bound = HEADS["dpc"].max_parameters(plan.head_inputs, None, g.head, CLASSES)
    assert count_parameters(model.decoder) + count_parameters(model.classifier) == bound


@settings(max_examples=25, deadline=None)
@given(cells(valid=False))
def test_a_branch_reading_itself_or_a_later_branch_is_refused_at_the_first_one(cell):
    branches, _ = cell
    first = next(i for i, b in enumerate(branches) if b["input"] >= i)
    err = _refusal(small_doc(branches))
    assert err.pointer == f"/head/branches/{first}/input"


# --- The cell file: DeepLab's JSON, read strictly; a refusal points into the file ---


def test_the_published_cell_reads_as_the_heads_branches(tmp_path):
    path = tmp_path / "cell.json"
    path.write_text(DPC_CITYSCAPES)
    assert read_cell(path) == BRANCHES


def test_a_one_by_one_branch_needs_no_rate(tmp_path):
    path = tmp_path / "cell.json"
    path.write_text('[{"op": "conv", "kernel": 1, "input": -1}]')
    assert read_cell(path) == [{"kernel": 1, "rate": [1, 1], "input": -1}]


@pytest.mark.parametrize(
    "text, pointer, words",
    [
        ("[", "/", "invalid JSON"),
        ("{}", "/", "expected a JSON list"),
        ("[]", "/", "an empty list"),
        ("[3]", "/0", "a JSON object"),
        ('[{"op": "pyramid_pooling", "kernel": 1, "input": -1}]', "/0/op", "not supported"),
        ('[{"kernel": 3, "rate": [1, 1], "input": -1}]', "/0/op", "not supported"),
        ('[{"op": "conv", "kernel": 3, "rate": [1, 1], "input": -1, "input": 0}]', "/0/input", "duplicate key"),
        ('[{"op": "conv", "kernel": 3, "rate": [NaN, 1], "input": -1}]', "/0/rate/0", "not JSON"),
    ],
)
def test_malformed_cell_files_are_refused_with_a_pointer(tmp_path, text, pointer, words):
    path = tmp_path / "cell.json"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        read_cell(path)
    assert str(err.value).startswith(f"{path}: {pointer}: ")
    assert words in err.value.reason


@pytest.mark.parametrize(
    "branch, pointer",
    [
        ({"kernel": 3, "rate": [1, 1], "input": 1}, "/1/input"),
        ({"kernel": 3, "rate": [1, 1], "input": -1, "grid_size": [2, 2]}, "/1"),
        ({"kernel": 3, "rate": [1, 99], "input": 0}, "/1/rate/1"),
        ({"kernel": True, "rate": [1, 1], "input": 0}, "/1/kernel"),
        ({"kernel": 3, "input": 0}, "/1"),
    ],
)
def test_spec_refusals_of_a_branch_point_into_the_cell_file(branch, pointer):
    doc = small_doc([BRANCHES[0], branch])
    with pytest.raises(SpecError) as err:
        try:
            genotype_from_dict(doc)
        except SpecError as e:
            raise in_cell_file(e, "cell.json") from None
    assert err.value.source == "cell.json"
    assert err.value.pointer == pointer
