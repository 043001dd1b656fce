"""The CLI as people and scripts use it: outputs, exit codes, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

GENOTYPES = Path(__file__).parents[1] / "genotypes"
SMALL = str(GENOTYPES / "rspnet_small.json")


def test_list_json_reports_sizes_and_weights(run_cli, zoo_home):
    code, out, err = run_cli("list", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["rspnet_small"]["weights"] is None
    assert rows["rspnet_small"]["tags"] == {"synth": "trained"}
    assert 0 < rows["rspnet_small"]["parameters"] < 1_000_000
    assert rows["rspnet_small"]["flops"] > 0
    code, out, err = run_cli("build", SMALL)
    assert code == 0, err
    code, out, _ = run_cli("list", "--json")
    assert {r["name"]: r for r in json.loads(out)}["rspnet_small"]["weights"] == "initialised"


def test_list_for_people(run_cli):
    code, out, _ = run_cli("list")
    assert code == 0 and "rspnet_small" in out and "GFLOPs" in out


def test_show_by_name_and_by_file_agree(run_cli):
    code, by_name, _ = run_cli("show", "rspnet_small", "--json")
    code2, by_file, _ = run_cli("show", SMALL, "--json")
    assert code == code2 == 0
    info = json.loads(by_name)
    assert info == json.loads(by_file)
    assert info["cells"]["normal"]["steps"][0] == "skip_connect(s0) + dil_conv_3x3(s1)"
    spec = json.loads(Path(SMALL).read_text())
    fused = next(n for n in spec["network"]["nodes"] if n.get("partial") and len(n["inputs"][1]["paths"]) > 1)
    node = next(n for n in info["nodes"] if n["id"] == fused["id"])
    assert node["inputs"][1] == " + ".join(f"{p['node']}*{p['weight']}" for p in fused["inputs"][1]["paths"])
    assert node["partial"] == {"ratio": fused["partial"]["ratio"], "depth": fused["partial"].get("depth", 1)}


def test_registered_names_win_over_a_folder_of_the_same_name(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("build", "rspnet_small", "--out", ".")  # makes ./rspnet_small/
    assert code == 0 and (tmp_path / "rspnet_small").is_dir(), err
    code, out, err = run_cli("show", "rspnet_small", "--json")
    assert code == 0, err
    code, by_folder, err = run_cli("show", "./rspnet_small", "--json")  # a path names the folder
    assert code == 0, err
    assert json.loads(by_folder)["sha256"] == json.loads(out)["sha256"]
    assert not (tmp_path / "zoo-home" / ".stats.json").exists()  # list and show write nothing


def test_show_draws_the_graph(run_cli, tmp_path):
    png = tmp_path / "graph.png"
    code, out, err = run_cli("show", "rspnet_c", "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = json.loads((GENOTYPES / "rspnet_c.json").read_text())["network"]["nodes"][-1]["id"]
    assert "rspnet_c" in out and last in out


def test_build_json_and_out(run_cli, tmp_path):
    code, out, err = run_cli("build", SMALL, "--out", str(tmp_path), "--num-classes", "3", "--seed", "1", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["path"] == str(tmp_path / "rspnet_small") and info["num_classes"] == 3
    config = json.loads((tmp_path / "rspnet_small" / "config.json").read_text())
    assert config["num_classes"] == 3


@pytest.mark.parametrize(
    "args,message",
    [
        (["show", "no_such_model"], "unknown model 'no_such_model'"),
        (["build", "missing.json"], "missing.json: no such file in "),
        (["build", SMALL, "--weights", "nowhere.safetensors"], "nowhere.safetensors: no such weights file"),
        (["build", SMALL, "--num-classes", "zero"], "--num-classes"),
        (["list", "--colour"], "No such option: --colour"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["show", "rspnet_small", "--plot", "graph.bmp"], ".svg or .png"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_cli, tmp_path, zoo_home, monkeypatch, args, message):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code, out, err = run_cli(*args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("rspnet-zoo: error: ")
    assert message in err
    assert not list(cwd.iterdir()) and not zoo_home.exists()


def test_console_script_exit_codes_without_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 1')
    exe = Path(sys.executable).with_name("rspnet-zoo")
    proc = subprocess.run([str(exe), "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == f"rspnet-zoo: error: {bad}: /: invalid JSON: Expecting ',' delimiter at line 1 column 21"
    )
    proc = subprocess.run([sys.executable, "-m", "rspnet_zoo", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "validate" in proc.stdout
