"""``--runtime openvino``: an exported ONNX file compiled by OpenVINO, behind the same runner interface as
onnxruntime's (eval, predict, bench); refused in one line where OpenVINO is not installed."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from rspnet_zoo.errors import ZooError
from rspnet_zoo.interop.export import export_model
from rspnet_zoo.predict.runtime import FILE_RUNTIMES, TorchRunner, load_runner
from rspnet_zoo.training.tasks import EvalRequest, run_eval
from rspnet_zoo.zoo.registry import load_trained

SIZE = (64, 64)
TOLERANCE = 1e-4  # what export.py checks a float file against the eager model with


@pytest.fixture(scope="module")
def net():
    return load_trained("rspnet_small.synth")


@pytest.fixture(scope="module")
def float_file(net, tmp_path_factory):
    pytest.importorskip("openvino")
    file = tmp_path_factory.mktemp("openvino") / "rspnet_small.onnx"
    export_model(net, "onnx", file, SIZE, dynamic_size=True)
    return file


def test_without_openvino_each_command_refuses_in_one_line_with_the_install_hint(run_cli, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    file = tmp_path / "model.onnx"  # refused before the file is read
    file.write_bytes(b"")
    hint = "openvino is not installed: pip install 'rspnet-zoo[openvino]'"
    for args in (
        ["eval", str(file), "--runtime", "openvino", "--length", "2"],
        ["predict", str(file), str(file), "--out", str(tmp_path / "out"), "--runtime", "openvino"],
        ["bench", "rspnet_small", "--runtime", "openvino", "--size", "32x32", "--rounds", "1"],
    ):
        code, _, err = run_cli(*args)
        assert code == 2 and hint in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "out").exists()


def test_runtime_names_are_checked_and_apply_to_files_only(tmp_path):
    with pytest.raises(ZooError, match="unknown runtime 'tvm' for an exported file: one of onnxruntime, openvino"):
        load_runner(str(tmp_path / "model.onnx"), runtime="tvm")
    with pytest.raises(ZooError, match="--runtime openvino runs exported files; export 'rspnet_small.synth' first"):
        load_runner("rspnet_small.synth", runtime="openvino")
    assert list(FILE_RUNTIMES) == ["onnxruntime", "openvino"]


@pytest.mark.slow  # an export and an OpenVINO compilation
def test_a_float_file_in_openvino_runs_as_the_torch_model(net, float_file, tmp_path):
    run = load_runner(str(float_file), runtime="openvino", threads=2)
    x = torch.randn(2, 3, 48, 80)
    assert (run(x) - TorchRunner(net)(x)).abs().max().item() <= TOLERANCE
    assert (run.runtime, run.name, run.num_classes, run.precision) == ("openvino", "rspnet_small", 9, "float32")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ZooError, match="garbage.onnx: openvino cannot load it"):
        load_runner(str(garbage), runtime="openvino")


@pytest.mark.slow  # two evaluations and an OpenVINO compilation
def test_eval_and_bench_of_a_file_in_openvino(float_file, run_cli):
    options = dict(data="synthetic", size=SIZE, length=6, batch_size=3)
    deployed = run_eval(EvalRequest(model=str(float_file), runtime="openvino", **options))
    eager = run_eval(EvalRequest(model="rspnet_small.synth", **options))
    assert deployed["miou"] == pytest.approx(eager["miou"], abs=TOLERANCE)
    code, out, err = run_cli(
        "bench", str(float_file), "--runtime", "openvino", "--size", "32x48", "--rounds", "1", "--json"
    )
    assert code == 0, err
    (row,) = json.loads(out)["models"]
    assert row["runtime"] == "openvino" and row["name"] == "rspnet_small.onnx [float32]" and row["flops"] > 0
