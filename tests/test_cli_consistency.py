"""The commands agree on conventions: diff exits as diff(1), no command overwrites a spec without --force,
validate reports every error of a file (up to a limit)."""

import json
from pathlib import Path

from rspnet_zoo.cli.zoo_commands import MAX_ERRORS

ROOT = Path(__file__).parents[1]
SPEC = ROOT / "genotypes" / "rspnet_small.json"
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def test_diff_exits_0_same_1_different_2_trouble(run_cli, tmp_path):
    assert run_cli("diff", "rspnet_small", str(SPEC), "--no-sizes")[0] == 0
    assert run_cli("diff", "rspnet_small", "rspnet_c", "--no-sizes")[0] == 1
    assert run_cli("diff", "rspnet_small", str(tmp_path / "missing.json"))[0] == 2


def test_import_refuses_to_overwrite_without_force(run_cli, tmp_path):
    out = tmp_path / "spec.json"
    out.write_text("mine")
    code, stdout, err = run_cli("import", "darts", DARTS_V2, "--out", str(out))
    assert code == 2 and stdout == ""
    assert "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == "mine"
    code, _, err = run_cli("import", "darts", DARTS_V2, "--out", str(out), "--force")
    assert code == 0, err
    assert json.loads(out.read_text())["cells"]  # a spec now, not "mine"


def _broken(tmp_path: Path, edits: dict[tuple, object]) -> Path:
    doc = json.loads(SPEC.read_text())
    for path, value in edits.items():
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    file = tmp_path / "broken.json"
    file.write_text(json.dumps(doc))
    return file


def test_validate_reports_every_error_of_a_file(run_cli, tmp_path):
    edits = {("defaults", "num_classes"): -1, ("head", "channels"): "x", ("name",): "Bad Name"}
    file = _broken(tmp_path, edits)
    code, out, err = run_cli("validate", str(file), str(SPEC))
    assert code == 2
    expected = {"/" + "/".join(path) for path in edits}
    reported = {line.split(": ")[3] for line in err.strip().splitlines()}
    assert reported == expected
    assert "ok" in out and "rspnet_small" in out  # the good file still reported
    code, out, _ = run_cli("validate", str(file), "--json")
    [result] = json.loads(out)
    assert {e["pointer"] for e in result["errors"]} == expected
    assert result["pointer"] == result["errors"][0]["pointer"]  # the first error stays where it was


def test_validate_stops_at_the_limit(run_cli, tmp_path):
    doc = json.loads(SPEC.read_text())
    nodes = doc["network"]["nodes"]
    for node in nodes:  # three schema errors per node
        node["channels"] = "x"
        node["reduction"] = "y"
        node["colour"] = "red"
    assert 3 * len(nodes) > MAX_ERRORS
    file = tmp_path / "broken.json"
    file.write_text(json.dumps(doc))
    code, _, err = run_cli("validate", str(file))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == MAX_ERRORS + 1
    assert f"the first {MAX_ERRORS} errors" in lines[-1]


def test_validate_reports_every_semantic_error_too(run_cli, tmp_path):
    """Past the schema: each independent semantic check reports all it finds, not just the first."""
    edits = {
        ("cells", "normal", "steps", 0, "edges", 0, "op"): "warp_conv",
        ("cells", "normal", "steps", 1, "edges", 1, "op"): "fold_conv",
        ("cells", "normal", "concat", 0): 9,
        ("defaults", "class_names"): ["one"],
    }
    file = _broken(tmp_path, edits)
    code, out, _ = run_cli("validate", str(file), "--json")
    [result] = json.loads(out)
    assert code == 2
    expected = {"/" + "/".join(map(str, path)) for path in edits}
    assert {e["pointer"] for e in result["errors"]} == expected
    assert {e["error"].split(" (")[0] for e in result["errors"] if "unknown op" in e["error"]} == {
        "unknown op 'warp_conv'",
        "unknown op 'fold_conv'",
    }
