"""`rspnet-zoo diff A B`: cells, ops, paths, heads and sizes, in words and as JSON."""

import json

from rspnet_zoo.spec.diff import diff_specs
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.stats import count_parameters, meta_model


def test_same_spec_is_identical(run_cli):
    code, out, err = run_cli("diff", "nas_segm_arch1", "nas_segm_arch1", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["identical"] and result["changes"] == []
    count = count_parameters(meta_model(SHIPPED["nas_segm_arch1"]))
    assert result["sizes"]["parameters"] == {"a": count, "b": count, "delta": 0}


def test_darts_v1_against_v2_names_every_changed_op():
    result = diff_specs(SHIPPED["darts_v1_cifar"], SHIPPED["darts_v2_cifar"])
    edges = {c["pointer"]: (c["a"], c["b"]) for c in result["changes"] if c["section"] == "cells"}
    assert len(edges) == 9
    assert edges["/cells/normal/steps/3/edges/1"] == (
        {"input": 2, "op": "skip_connect"},
        {"input": 2, "op": "dil_conv_3x3"},
    )
    words = [c["words"] for c in result["changes"]]
    assert "cell 'reduce', step 3, edge 1: avg_pool_3x3 of state 0 -> max_pool_3x3 of state 1" in words
    assert {c["section"] for c in result["changes"]} == {"identity", "cells"}


def test_sizes_and_paths_in_words(run_cli):
    code, out, err = run_cli("diff", "autodeeplab_s", "autodeeplab_m")
    assert code == 1, err  # as diff(1): different specs exit 1
    assert "node 'cell0', channels: 20 -> 32" in out
    assert "parameters: 10,147,683 -> 21,622,707 (+11,475,024)" in out


def test_added_and_removed_nodes_and_head_changes(tmp_path, run_cli):
    doc = json.loads(SHIPPED["nas_segm_arch0"].model_dump_json(exclude_defaults=True))
    edited = tmp_path / "edited.json"
    doc["name"] = "edited"
    doc["head"]["upsample"] = "bilinear"
    edited.write_text(json.dumps(doc))
    code, out, err = run_cli("diff", "nas_segm_arch0", str(edited), "--json", "--no-sizes")
    assert code == 1, err
    result = json.loads(out)
    assert "sizes" not in result
    changes = {c["pointer"]: c for c in result["changes"]}
    assert changes["/head/upsample"]["a"] == "none" and changes["/head/upsample"]["b"] == "bilinear"
    result = diff_specs(SHIPPED["nas_segm_arch0"], SHIPPED["nas_segm_arch1"])
    added = [c["where"] for c in result["changes"] if c["kind"] == "added"]
    assert added == [
        f"node '{n}'"
        for n in ("block2_r1", "block2_r2", "block3_r0", "block3_r1", "block5_r1", "block5_r2", "block6_r1")
    ]
    assert not [c for c in result["changes"] if c["kind"] == "removed"]
    block1 = next(c for c in result["changes"] if c["where"] == "node 'block1', template, stride")
    assert (block1["a"], block1["b"], block1["pointer"]) == (1, 2, "/network/nodes/9/template/stride")


def test_unknown_spec_is_one_line(run_cli):
    code, out, err = run_cli("diff", "darts_v2_cifar", "no_such_model")
    assert code == 2 and out == ""
    assert "unknown model 'no_such_model'" in err and len(err.strip().splitlines()) == 1
