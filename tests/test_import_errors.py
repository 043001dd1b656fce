"""Malformed genotype encodings: one line saying what was expected, exit 2, nothing written, nothing evaluated."""

import json

import pytest
from published import AUTODEEPLAB_CELL, AUTODEEPLAB_PATH, DARTS_V2, NAS_SEGM_ARCH0

CASES = [
    ("darts-not-a-genotype", ["darts", "[1, 2, 3]"], "expected Genotype(normal="),
    ("darts-code-is-not-run", ["darts", "__import__('os').system('touch pwned')"], "expected Genotype(normal="),
    (
        "darts-call-in-a-field",
        ["darts", DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=open('x')")],
        "normal_concat: expected a literal",
    ),
    ("darts-unbalanced", ["darts", DARTS_V2[:-5]], "expected Genotype(normal="),
    (
        "darts-missing-field",
        ["darts", "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2])"],
        "lacks reduce, reduce_concat",
    ),
    (
        "darts-unknown-op",
        ["darts", DARTS_V2.replace("dil_conv_3x3", "conv_99x99")],
        "normal[7]: unknown op 'conv_99x99'",
    ),
    (
        "darts-forward-input",
        [
            "darts",
            DARTS_V2.replace(
                "('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0)",
                "('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 0)",
                1,
            ),
        ],
        "normal[1]",
    ),
    ("darts-odd-edges", ["darts", DARTS_V2.replace("[('sep_conv_3x3', 0), ", "[", 1)], "two per node"),
    (
        "darts-bad-concat",
        ["darts", DARTS_V2.replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=[2, 3, 9]")],
        "reduce_concat = [2, 3, 9]",
    ),
    ("darts-odd-channels", ["darts", DARTS_V2, "--channels", "37"], "channels must be even"),
    ("darts-bad-network", ["darts", DARTS_V2, "--network", "mnist"], "mnist"),
    ("darts-bad-name", ["darts", DARTS_V2, "--name", "Bad-Name"], "/name"),
    ("adl-path-not-numbers", ["autodeeplab", "--path", "0,a,1", "--cell", AUTODEEPLAB_CELL], "expected a network path"),
    ("adl-path-jumps", ["autodeeplab", "--path", "0,0,2", "--cell", AUTODEEPLAB_CELL], "path[2] = 2"),
    ("adl-path-start", ["autodeeplab", "--path", "1,1", "--cell", AUTODEEPLAB_CELL], "must start at level 0"),
    (
        "adl-cell-not-a-list",
        ["autodeeplab", "--path", AUTODEEPLAB_PATH, "--cell", "[[0,7],[1,4]"],
        "expected a cell as a list",
    ),
    (
        "adl-cell-edge-range",
        ["autodeeplab", "--path", AUTODEEPLAB_PATH, "--cell", "[[0,7],[5,4]]"],
        "step 0 owns edges 0..1",
    ),
    ("adl-cell-op-range", ["autodeeplab", "--path", AUTODEEPLAB_PATH, "--cell", "[[0,9],[1,4]]"], "op index 9"),
    (
        "adl-cell-same-edge",
        ["autodeeplab", "--path", AUTODEEPLAB_PATH, "--cell", "[[0,7],[0,4]]"],
        "both choose edge 0",
    ),
    ("nas-segm-not-a-pair", ["nas-segm", "[[1, 2, 3]]"], "expected [templates, blocks]"),
    ("nas-segm-bad-template", ["nas-segm", NAS_SEGM_ARCH0.replace("[3, 0, 1]", "[3, 9, 1]")], "template 0 = [3, 9, 1]"),
    (
        "nas-segm-bad-position",
        ["nas-segm", NAS_SEGM_ARCH0.replace("[0, 1, 0, 0, 1]", "[4, 1, 0, 0, 1]")],
        "block 0 = [4, 1, 0, 0, 1]",
    ),
    (
        "nas-segm-short-block",
        ["nas-segm", NAS_SEGM_ARCH0.replace("[0, 1, 0, 0, 1]", "[0, 1, 0]")],
        "block 0 = [0, 1, 0]",
    ),
    ("nas-segm-garbage", ["nas-segm", "lambda: 0"], "expected [templates, blocks]"),
]


@pytest.mark.parametrize("case, args, words", CASES, ids=[c[0] for c in CASES])
def test_malformed_encoding_is_one_line_exit_2_and_writes_nothing(case, args, words, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("import", *args, "--out", str(tmp_path / "spec.json"))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert words in err
    assert list(tmp_path.iterdir()) == []


def test_defaults_name_the_spec_and_write_it_beside_the_caller(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        "import", "darts", DARTS_V2, "--network", "imagenet", "--classes", "5", "--no-auxiliary", "--json"
    )
    assert code == 0, err
    info = json.loads(out)
    assert info["name"] == "darts_imagenet" and info["path"] == "darts_imagenet.json"
    doc = json.loads((tmp_path / "darts_imagenet.json").read_text())
    assert doc["defaults"]["num_classes"] == 5 and "auxiliary" not in doc["head"]


def test_range_and_assignment_forms_parse_like_lists():
    from rspnet_zoo.interop.importers.darts import parse_genotype

    listed = parse_genotype(DARTS_V2)
    assigned = parse_genotype("DARTS = " + DARTS_V2.replace("[2, 3, 4, 5]", "range(2, 6)"))
    assert listed == assigned


DPC_BRANCH = '{"op": "conv", "kernel": 3, "rate": [1, 6], "input": -1}'
DPC_CASES = [
    ("dpc-no-file", None, [], "no such file"),
    ("dpc-not-json", "[{", [], "invalid JSON"),
    ("dpc-an-object", '{"kernel": 3}', [], "/: expected a JSON list of branches"),
    (
        "dpc-later-branch",
        f"[{DPC_BRANCH}, {DPC_BRANCH.replace('-1', '1')}]",
        ["--encoder", "resnet18"],
        "/1/input: branch 1 reads 1",
    ),
    ("dpc-pooling", '[{"op": "pyramid_pooling", "grid_size": [1, 2]}]', [], "/0/op: 'pyramid_pooling'"),
    (
        "dpc-rate-zero",
        f"[{DPC_BRANCH.replace('[1, 6]', '[0, 6]')}]",
        ["--encoder", "resnet18"],
        "/0/rate/0: 0 is not allowed",
    ),
    ("dpc-unknown-encoder", f"[{DPC_BRANCH}]", ["--encoder", "no_such_net"], "unknown timm model 'no_such_net'"),
    ("dpc-no-low-level", f"[{DPC_BRANCH}]", ["--encoder", "resnet18", "--low-level-reduction", "64"], "reduction 64"),
    ("dpc-no-output-stride", f"[{DPC_BRANCH}]", ["--encoder", "vit_tiny_patch16_224"], "timm cannot build"),
    ("dpc-stride-32", f"[{DPC_BRANCH}]", ["--output-stride", "32"], "'32' is not one of"),
]


@pytest.mark.parametrize("case, text, flags, words", DPC_CASES, ids=[c[0] for c in DPC_CASES])
def test_a_malformed_dpc_file_or_encoder_is_one_line_exit_2_and_writes_nothing(
    case, text, flags, words, run_cli, tmp_path_factory
):
    cells, out = tmp_path_factory.mktemp("cells"), tmp_path_factory.mktemp("out")
    cell = cells / "cell.json"
    if text is not None:
        cell.write_text(text)
    code, stdout, err = run_cli("import", "dpc", str(cell), *flags, "--out", str(out / "spec.json"))
    assert code == 2
    assert stdout == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert words in err
    assert list(out.iterdir()) == []
