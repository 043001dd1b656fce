"""Decoding on hand-set weights: the DARTS rule, ties, all-'none' edges, the skip cap, path thresholds."""

from __future__ import annotations

import pytest
import torch

from rspnet_zoo.errors import ZooError
from rspnet_zoo.nn.ops import DARTS_PRIMITIVES
from searchers.rspnet.decode import decode_cell, decode_paths, keep_paths

P = DARTS_PRIMITIVES  # none, max_pool, avg_pool, skip, sep3, sep5, dil3, dil5
IDX = {p: i for i, p in enumerate(P)}


def weights(rows: list[dict[str, float]]) -> torch.Tensor:
    """One row per edge; unnamed primitives get 0."""
    w = torch.zeros(len(rows), len(P))
    for e, row in enumerate(rows):
        for op, v in row.items():
            w[e, IDX[op]] = v
    return w


def edges(cell):
    return [[(e.input, e.op) for e in step.edges] for step in cell.steps]


def test_darts_rule_keeps_two_strongest_edges_and_their_best_non_none_op():
    # step 0: edges from 0, 1; step 1: edges from 0, 1, 2
    w = weights(
        [
            {"sep_conv_3x3": 0.6, "none": 0.9},
            {"dil_conv_5x5": 0.3},
            {"max_pool_3x3": 0.2},
            {"sep_conv_5x5": 0.7, "none": 0.95},  # 'none' never counts, neither for the op nor the ranking
            {"avg_pool_3x3": 0.5},
        ]
    )
    d = decode_cell(w, P, steps=2)
    assert edges(d.cell) == [[(0, "sep_conv_3x3"), (1, "dil_conv_5x5")], [(1, "sep_conv_5x5"), (2, "avg_pool_3x3")]]
    assert d.cell.concat == [2, 3] and d.cell.num_inputs == 2


def test_ties_go_to_the_earlier_input_and_the_earlier_primitive():
    w = weights(
        [
            {"sep_conv_3x3": 0.5, "dil_conv_3x3": 0.5},  # op tie: sep_conv_3x3 comes first in the primitives
            {"max_pool_3x3": 0.5},
            {"sep_conv_5x5": 0.4},
            {"sep_conv_5x5": 0.4},  # three equal edges: inputs 0 and 1 win over 2
            {"sep_conv_5x5": 0.4},
        ]
    )
    d = decode_cell(w, P, steps=2)
    assert edges(d.cell) == [[(0, "sep_conv_3x3"), (1, "max_pool_3x3")], [(0, "sep_conv_5x5"), (1, "sep_conv_5x5")]]
    assert decode_cell(w, P, steps=2).cell == d.cell  # a function of the weights alone


def test_all_none_edges_lose_to_any_real_op_and_still_decode_when_nothing_else_is_left():
    w = weights(
        [
            {"none": 1.0},
            {"none": 1.0},  # step 0: both edges all-'none' -> still two edges, first real primitive
            {"none": 1.0},
            {"dil_conv_3x3": 0.01, "none": 0.99},
            {"avg_pool_3x3": 0.02, "none": 0.98},
        ]
    )
    d = decode_cell(w, P, steps=2)
    assert edges(d.cell)[0] == [(0, "max_pool_3x3"), (1, "max_pool_3x3")]
    assert edges(d.cell)[1] == [(1, "dil_conv_3x3"), (2, "avg_pool_3x3")]  # the all-'none' edge from 0 is dropped
    assert all(e.op != "none" for step in d.cell.steps for e in step.edges)


def collapsed() -> torch.Tensor:
    """Four skip-connects win their edges; the second choice of each is known."""
    return weights(
        [
            {"skip_connect": 0.9, "sep_conv_3x3": 0.2},
            {"skip_connect": 0.5, "dil_conv_3x3": 0.4},
            {"skip_connect": 0.8, "sep_conv_5x5": 0.1},
            {"skip_connect": 0.6, "max_pool_3x3": 0.3},
            {"avg_pool_3x3": 0.05},
        ]
    )


def test_skip_cap_strikes_the_weakest_skip_connects_and_reports_the_counts():
    d = decode_cell(collapsed(), P, steps=2, skip_cap=2)
    assert d.skips_before_cap == 4 and d.skips == 2
    assert d.struck == ((0, 1), (1, 1))  # skip weights 0.5 and 0.6 go first
    assert edges(d.cell) == [[(0, "skip_connect"), (1, "dil_conv_3x3")], [(0, "skip_connect"), (1, "max_pool_3x3")]]


def test_skip_cap_zero_removes_every_skip_and_may_move_the_edge():
    d = decode_cell(collapsed(), P, steps=2, skip_cap=0)
    assert d.skips == 0 and d.skips_before_cap == 4 and len(d.struck) == 4
    # step 1 without skips: edge from 1 (max_pool 0.3) beats edge 0 (sep5 0.1); edge 2 (avg 0.05) is third
    assert edges(d.cell) == [[(0, "sep_conv_3x3"), (1, "dil_conv_3x3")], [(0, "sep_conv_5x5"), (1, "max_pool_3x3")]]


def test_no_cap_keeps_the_collapse():
    d = decode_cell(collapsed(), P, steps=2, skip_cap=None)
    assert d.skips == d.skips_before_cap == 4 and d.struck == ()


def test_decode_refuses_weights_of_the_wrong_shape():
    with pytest.raises(ValueError, match="3 steps"):
        decode_cell(torch.zeros(5, len(P)), P, steps=3)


GRAPH = {  # node -> candidates, topological order; stem1 is the root; head reads a2, b2
    "a1": ["stem1"],
    "b1": ["stem1"],
    "a2": ["a1", "b1"],
    "b2": ["a1", "b1"],
}


def test_topk_keeps_several_paths_strongest_first():
    assert keep_paths([0.2, 0.5, 0.3], topk=2, threshold=None) == [1, 2]
    assert keep_paths([0.4, 0.2, 0.4], topk=2, threshold=None) == [0, 2]  # tie: the earlier candidate first
    d = decode_paths(
        GRAPH, {"a1": [1.0], "b1": [1.0], "a2": [0.6, 0.4], "b2": [0.3, 0.7]}, ["a2", "b2"], topk=2, threshold=None
    )
    assert d.kept["a2"] == [("a1", 0.6), ("b1", 0.4)] and d.kept["b2"] == [("b1", 0.7), ("a1", 0.3)]
    assert d.dropped == () and d.pruned == ()


def test_threshold_can_keep_several_paths():
    d = decode_paths(
        GRAPH, {"a1": [1.0], "b1": [1.0], "a2": [0.55, 0.45], "b2": [0.9, 0.1]}, ["a2", "b2"], topk=None, threshold=0.4
    )
    assert [s for s, _ in d.kept["a2"]] == ["a1", "b1"] and [s for s, _ in d.kept["b2"]] == ["a1"]
    assert d.pruned == ()  # b1 is still read by a2


def test_threshold_that_keeps_zero_paths_drops_the_node_and_prunes_what_no_longer_reaches_the_head():
    attention = {"a1": [1.0], "b1": [1.0], "a2": [0.8, 0.2], "b2": [0.3, 0.3]}
    d = decode_paths(GRAPH, attention, ["a2", "b2"], topk=None, threshold=0.5)
    assert d.dropped == ("b2",)  # none of its paths reaches 0.5
    assert d.pruned == ("b1",)  # only b2 could have read it... and a2 keeps a1 only
    assert list(d.kept) == ["a1", "a2"]


def test_a_node_whose_sources_were_all_dropped_is_dropped_too():
    graph = {"a1": ["stem1"], "a2": ["a1"], "a3": ["a2", "stem1"]}
    d = decode_paths(graph, {"a1": [0.1], "a2": [0.9], "a3": [0.6, 0.4]}, ["a3"], topk=None, threshold=0.35)
    assert d.dropped == ("a1", "a2")
    assert d.kept == {"a3": [("stem1", 0.4)]}


def test_threshold_and_topk_together_keep_at_most_k_paths_above_the_threshold():
    d = decode_paths(
        {"x": ["stem1"], "y": ["stem1"], "a": ["stem1", "x", "y"]},
        {"x": [1.0], "y": [1.0], "a": [0.4, 0.35, 0.25]},
        ["a"],
        topk=1,
        threshold=0.3,
    )
    assert d.kept["a"] == [("stem1", 0.4)]


def test_a_threshold_that_leaves_the_head_nothing_is_a_clear_error():
    with pytest.raises(ZooError, match="lower the threshold"):
        decode_paths(
            GRAPH,
            {"a1": [1.0], "b1": [1.0], "a2": [0.5, 0.5], "b2": [0.5, 0.5]},
            ["a2", "b2"],
            topk=None,
            threshold=0.9,
        )
