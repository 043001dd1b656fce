"""A corpus of malformed specs: `rspnet-zoo validate` exits 2 with the JSON pointer, fast, allocating nothing."""

import copy
import json
from pathlib import Path

import pytest

from rspnet_zoo.cli.zoo_commands import MAX_ERRORS
from rspnet_zoo.nn import model as model_module

BASE = json.loads((Path(__file__).parents[1] / "genotypes" / "rspnet_small.json").read_text())
NODES = [n["id"] for n in BASE["network"]["nodes"]]


def node(doc, node_id):
    return doc["network"]["nodes"][NODES.index(node_id)]


def at(node_id, *rest):
    return "/".join(["/network/nodes", str(NODES.index(node_id)), *map(str, rest)])


def mutate(fn):
    doc = copy.deepcopy(BASE)
    fn(doc)
    return json.dumps(doc)


def set_path(doc, keys, value):
    for k in keys[:-1]:
        doc = doc[k]
    doc[keys[-1]] = value


def add_cycle(doc):
    node(doc, "l2_r8")["inputs"][1]["paths"].insert(1, {"node": "l3_r16"})


def add_forward_ref(doc):
    node(doc, "l2_r8")["inputs"][1]["paths"].insert(1, {"node": "l3_r32"})


def drop_from_head(doc):
    doc["head"]["inputs"].remove("l3_r32")


def duplicate_id(doc):
    node(doc, "l2_r8")["id"] = "l1_r8"


def huge_nodes(doc):
    doc["network"]["nodes"] = [{}] * 1_000_000


# (case id, document text, expected pointer, expected words in the reason)
CORPUS = [
    ("bad-json", '{"format_version": 1, "name": ', "/", "invalid JSON"),
    ("deeply-nested-json", "[" * 200_000 + "]" * 200_000, "/", "JSON"),
    ("top-level-list", "[]", "/", "JSON object"),
    ("top-level-string", '"rspnet"', "/", "JSON object"),
    ("missing-format-version", mutate(lambda d: d.pop("format_version")), "/", "format_version"),
    ("format-version-string", mutate(lambda d: set_path(d, ["format_version"], "1")), "/format_version", "integer"),
    (
        "unknown-format-version",
        mutate(lambda d: set_path(d, ["format_version"], 7)),
        "/format_version",
        "unknown format_version 7",
    ),
    ("missing-name", mutate(lambda d: d.pop("name")), "/", "'name' is a required property"),
    ("name-wrong-type", mutate(lambda d: set_path(d, ["name"], 42)), "/name", "type"),
    ("name-with-path-separators", mutate(lambda d: set_path(d, ["name"], "../../etc/passwd")), "/name", "pattern"),
    ("missing-network", mutate(lambda d: d.pop("network")), "/", "'network' is a required property"),
    (
        "unknown-field",
        mutate(lambda d: set_path(d, ["network", "nodes", 2, "colour"], "red")),
        "/network/nodes/2",
        "colour",
    ),
    (
        "channels-wrong-type",
        mutate(lambda d: set_path(node(d, "l2_r8"), ["channels"], "wide")),
        at("l2_r8", "channels"),
        "type",
    ),
    (
        "unknown-op",
        mutate(lambda d: set_path(d, ["cells", "normal", "steps", 1, "edges", 0, "op"], "conv_99x99")),
        "/cells/normal/steps/1/edges/0/op",
        "unknown op 'conv_99x99'",
    ),
    (
        "cell-forward-state",
        mutate(lambda d: set_path(d, ["cells", "normal", "steps", 0, "edges", 0, "input"], 4)),
        "/cells/normal/steps/0/edges/0/input",
        "reads state 4",
    ),
    (
        "cell-concat-missing-state",
        mutate(lambda d: set_path(d, ["cells", "normal", "concat"], [2, 3, 9])),
        "/cells/normal/concat/2",
        "does not exist",
    ),
    (
        "empty-edges",
        mutate(lambda d: set_path(d, ["cells", "normal", "steps", 0, "edges"], [])),
        "/cells/normal/steps/0/edges",
        "non-empty",
    ),
    (
        "unknown-cell",
        mutate(lambda d: set_path(node(d, "l2_r8"), ["cell"], "mystery")),
        at("l2_r8", "cell"),
        "unknown cell 'mystery'",
    ),
    (
        "dangling-input",
        mutate(lambda d: set_path(node(d, "l3_r16")["inputs"][1]["paths"][0], ["node"], "ghost")),
        at("l3_r16", "inputs", 1, "paths", 0, "node"),
        "dangling input",
    ),
    (
        "self-cycle",
        mutate(lambda d: set_path(node(d, "l3_r16")["inputs"][0]["paths"][0], ["node"], "l3_r16")),
        at("l3_r16", "inputs", 0, "paths", 0, "node"),
        "cycle",
    ),
    ("cycle", mutate(add_cycle), at("l2_r8", "inputs", 1, "paths", 1, "node"), "cycle"),
    ("forward-reference", mutate(add_forward_ref), at("l2_r8", "inputs", 1, "paths", 1, "node"), "forward reference"),
    ("duplicate-id", mutate(duplicate_id), at("l2_r8", "id"), "duplicate"),
    ("never-reaches-head", mutate(drop_from_head), at("l3_r32"), "never reaches the head"),
    ("head-dangling", mutate(lambda d: set_path(d, ["head", "inputs", 0], "nowhere")), "/head/inputs/0", "dangling"),
    (  # a field of a head type that is not the union's first: the field, not the type, is named
        "head-field-of-a-later-type",
        mutate(lambda d: d["head"].update(type="concat", channels=0)),
        "/head/channels",
        "minimum",
    ),
    ("wrong-slot-count", mutate(lambda d: node(d, "l2_r8")["inputs"].pop()), at("l2_r8", "inputs"), "takes 2 input"),
    (
        "reduction-not-power-of-two",
        mutate(lambda d: set_path(node(d, "l2_r8"), ["reduction"], 12)),
        at("l2_r8", "reduction"),
        "power of two",
    ),
    (
        "layer-skips-levels",
        mutate(lambda d: set_path(node(d, "stem1"), ["reduction"], 16)),
        at("stem1", "reduction"),
        "halves",
    ),
    (
        "hostile-channels",
        mutate(lambda d: set_path(node(d, "l2_r8"), ["channels"], 10**9)),
        at("l2_r8", "channels"),
        "maximum",
    ),
    ("hostile-node-count", mutate(huge_nodes), "/network/nodes", "1000000 entries"),
    ("oversized-file", " " * (9 * 2**20) + "{}", None, "file is larger than"),  # the file, not a place in it
    (
        "hostile-input-size",
        mutate(lambda d: set_path(d, ["defaults", "input_size"], [3, 10**9, 10])),
        "/defaults/input_size/1",
        "maximum",
    ),
    (
        "hostile-total-size",
        mutate(lambda d: [set_path(n, ["channels"], 4096) for n in d["network"]["nodes"]]),
        "/network",
        "parameters",
    ),
    (
        "partial-ratio-out-of-range",
        mutate(lambda d: set_path(node(d, "l3_r16"), ["partial", "ratio"], 1.5)),
        at("l3_r16", "partial", "ratio"),
        "1.5",
    ),
    (
        "attention-without-weight",
        mutate(lambda d: node(d, "l3_r16")["inputs"][1]["paths"][0].pop("weight")),
        at("l3_r16", "inputs", 1, "paths", 0),
        "weight",
    ),
    ("mean-length", mutate(lambda d: set_path(d, ["defaults", "mean"], [0.5])), "/defaults/mean", "3 values"),
    (
        "class-names-count",
        mutate(lambda d: set_path(d, ["defaults", "class_names"], ["a", "b"])),
        "/defaults/class_names",
        "19 classes",
    ),
]


@pytest.fixture
def no_network_allocation(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("validate must not build the network")

    monkeypatch.setattr(model_module.GenotypeNet, "__init__", refuse)


@pytest.mark.parametrize("case,text,expected_pointer,words", CORPUS, ids=[c[0] for c in CORPUS])
def test_validate_rejects_malformed_spec(tmp_path, run_cli, no_network_allocation, case, text, expected_pointer, words):
    spec = tmp_path / f"{case}.json"
    spec.write_text(text)
    code, out, err = run_cli("validate", str(spec))
    assert code == 2
    lines = err.strip().splitlines()
    assert all(line.startswith(f"rspnet-zoo: error: {spec}: ") for line in lines), err  # all of this file
    assert len(lines) <= MAX_ERRORS + 1  # the errors, and a last line when there were more
    where = "" if expected_pointer is None else f"{expected_pointer}: "
    assert lines[0].startswith(f"rspnet-zoo: error: {spec}: {where}"), lines[0]
    assert words in lines[0]
    assert "Traceback" not in err


def test_validate_reports_every_bad_file_and_accepts_good_ones(tmp_path, run_cli):
    good = Path(__file__).parents[1] / "genotypes" / "rspnet_small.json"
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    missing = tmp_path / "missing.json"
    code, out, err = run_cli("validate", str(good), str(bad), str(missing))
    assert code == 2
    assert "ok" in out and "rspnet_small" in out
    assert err.count("\n") == 2 and str(bad) in err and f"{missing}: no such file\n" in err  # the file, no pointer


def test_a_relative_path_that_is_not_there_says_where_it_was_looked_for(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("validate", "genotypes/rspnet_small.json")
    assert code == 2 and err == f"rspnet-zoo: error: genotypes/rspnet_small.json: no such file in {tmp_path}\n"


def test_validate_reports_every_dangling_input_and_every_node_cut_off_from_the_head(tmp_path, run_cli):
    inputs, cut_off = tmp_path / "inputs.json", tmp_path / "cut_off.json"
    for n in ("l1_r8", "l1_r16"):
        inputs_doc = json.loads(inputs.read_text()) if inputs.exists() else copy.deepcopy(BASE)
        node(inputs_doc, n)["inputs"][0]["paths"][0]["node"] = "nowhere"
        inputs.write_text(json.dumps(inputs_doc))
    cut_off.write_text(mutate(lambda d: set_path(d, ["head", "inputs"], ["l3_r32"])))
    code, out, _ = run_cli("validate", "--json", str(inputs), str(cut_off))
    assert code == 2
    by_file = {r["file"]: [e["pointer"] for e in r["errors"]] for r in json.loads(out)}
    assert by_file[str(inputs)] == [at("l1_r8", "inputs/0/paths/0/node"), at("l1_r16", "inputs/0/paths/0/node")]
    assert len(by_file[str(cut_off)]) > 1  # every node that no longer feeds the head
    assert at("l2_r8") in by_file[str(cut_off)] and at("l3_r16") in by_file[str(cut_off)]


def test_validate_json_mode(tmp_path, run_cli):
    bad = tmp_path / "bad.json"
    bad.write_text(mutate(lambda d: set_path(d, ["format_version"], 7)))
    code, out, err = run_cli("validate", "--json", str(bad))
    assert code == 2
    [result] = json.loads(out)
    assert result == {
        "file": str(bad),
        "ok": False,
        "pointer": "/format_version",
        "error": "unknown format_version 7: this rspnet-zoo reads 1..1",
        "errors": [{"pointer": "/format_version", "error": "unknown format_version 7: this rspnet-zoo reads 1..1"}],
    }


def test_a_key_that_does_not_print_is_escaped_so_the_error_stays_one_line():
    from rspnet_zoo.errors import SpecError
    from rspnet_zoo.spec.io import parse_spec

    with pytest.raises(SpecError) as e:
        parse_spec('{"\\n": ' + "1" * 71 + "}")
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("/\\n: a number with 71 digits")
