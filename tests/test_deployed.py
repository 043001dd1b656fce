"""Deployed files evaluated as they run: eval, predict and bench of an exported ONNX file go through the same
loops as the torch model (one runner interface), and a float file gives the torch model's figures."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rspnet_zoo.errors import ZooError
from rspnet_zoo.interop.export import export_model
from rspnet_zoo.predict.runtime import OnnxRunner, TorchRunner, load_runner
from rspnet_zoo.training.tasks import EvalRequest, run_eval
from rspnet_zoo.zoo.registry import load_trained

SIZE = (64, 64)
TOLERANCE = 1e-4  # what export.py checks a float file against the eager model with


@pytest.fixture(scope="module")
def net():
    return load_trained("rspnet_small.synth")


@pytest.fixture(scope="module")
def float_file(net, tmp_path_factory):
    file = tmp_path_factory.mktemp("deployed") / "rspnet_small.onnx"
    export_model(net, "onnx", file, SIZE, dynamic_size=True)
    return file


@pytest.fixture(scope="module")
def fixed_file(net, tmp_path_factory):
    file = tmp_path_factory.mktemp("deployed") / "fixed.onnx"
    export_model(net, "onnx", file, SIZE)
    return file


def test_a_float_file_runs_as_the_torch_model_and_says_what_it_is(net, float_file):
    onnx_run, torch_run = OnnxRunner(float_file, threads=2), TorchRunner(net)
    x = torch.randn(3, 3, 48, 80)
    assert (onnx_run(x) - torch_run(x)).abs().max().item() <= TOLERANCE
    for field in ("name", "num_classes", "class_names", "mean", "std"):
        assert getattr(onnx_run, field) == getattr(torch_run, field), field
    assert onnx_run.precision == "float32"


def test_eval_of_a_float_file_gives_the_torch_models_metrics(float_file):
    options = dict(data="synthetic", size=SIZE, length=12, batch_size=5)
    deployed = run_eval(EvalRequest(model=str(float_file), **options))
    eager = run_eval(EvalRequest(model="rspnet_small.synth", **options))
    assert deployed["images"] == eager["images"] == 12
    assert deployed["miou"] == pytest.approx(eager["miou"], abs=TOLERANCE)
    changed = np.abs(np.array(deployed["confusion"]) - np.array(eager["confusion"])).sum()
    assert changed <= 2 * TOLERANCE * deployed["pixels"]  # an argmax tie may fall either way


def test_a_fixed_batch_runs_in_pieces_and_a_fixed_size_refuses_others_before_any_work(fixed_file, run_cli):
    run = OnnxRunner(fixed_file)
    assert run(torch.randn(3, 3, *SIZE)).shape == (3, 9, *SIZE)
    code, _, err = run_cli("eval", str(fixed_file), "--size", "96x96", "--length", "2")
    assert code == 2 and "takes 3x64x64 images, not 3x96x96" in err and "--dynamic-size" in err
    assert "evaluate" not in err  # refused before the progress bar


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 3), h=st.integers(1, 80), w=st.integers(1, 80), dynamic=st.booleans())
def test_any_batch_of_any_size_runs_or_is_refused_in_one_line(float_file, fixed_file, batch, h, w, dynamic):
    run = OnnxRunner(float_file if dynamic else fixed_file)
    try:
        logits = run(torch.randn(batch, 3, h, w))
    except ZooError as e:
        assert len(str(e).splitlines()) == 1 and str(run.file) in str(e)
        assert dynamic or (h, w) != SIZE
    else:
        assert logits.shape == (batch, 9, h, w) and torch.isfinite(logits).all()


def test_predict_with_a_float_file_writes_the_torch_models_masks(float_file, run_cli, tmp_path, monkeypatch):
    image = tmp_path / "scene.png"
    assert run_cli("data", "sample", str(image), "--size", "64x96")[0] == 0
    monkeypatch.chdir(float_file.parent)  # a bare name with dots, as export --quantize names its files
    (float_file.parent / "rspnet_small.synth.onnx").write_bytes(float_file.read_bytes())
    for model, out in (("rspnet_small.synth.onnx", tmp_path / "onnx"), ("rspnet_small.synth", tmp_path / "torch")):
        code, stdout, err = run_cli("predict", model, str(image), "--out", str(out), "--json")
        assert code == 0, err
    onnx_mask, torch_mask = (
        np.array(Image.open(d / "scene_mask.png")) for d in (tmp_path / "onnx", tmp_path / "torch")
    )
    assert (onnx_mask != torch_mask).mean() <= TOLERANCE
    assert json.loads(stdout)[0]["classes"]  # the classes it found, by the names the file carries


def test_bench_times_a_file_beside_the_torch_model(float_file, run_cli):
    code, out, err = run_cli(
        "bench", "rspnet_small", str(float_file), "--num-classes", "9", "--size", "32x48", "--rounds", "1", "--json"
    )
    assert code == 0, err
    torch_row, file_row = json.loads(out)["models"]
    assert file_row["name"] == "rspnet_small.onnx [float32]" and file_row["runtime"] == "onnxruntime"
    assert file_row["flops"] == torch_row["flops"] > 0  # counted on the genotype the file names
    assert file_row["ms_median"] > 0 and file_row["peak_memory_mb"] is None


def test_bad_files_and_a_missing_runtime_are_one_line_errors(float_file, run_cli, tmp_path, monkeypatch):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    cases = [
        (["eval", str(garbage)], "garbage.onnx: onnxruntime cannot load it"),
        (["eval", str(tmp_path / "missing.onnx")], "missing.onnx: no such ONNX file"),
        (["eval", str(float_file), "--optimize"], "--optimize applies to torch models"),
        (["predict", str(garbage), str(garbage), "--out", str(tmp_path / "o")], "cannot load it"),
        (["bench", str(garbage), "--size", "32x32", "--rounds", "1"], "cannot load it"),
    ]
    for args, needle in cases:
        code, _, err = run_cli(*args)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (args, err)
    proto = onnx.load(str(float_file))
    next(p for p in proto.metadata_props if p.key == "mean").value = "0.5, 0.5"
    onnx.save(proto, str(tmp_path / "odd.onnx"))
    code, _, err = run_cli("eval", str(tmp_path / "odd.onnx"))
    assert code == 2 and "odd.onnx: its metadata 'mean' is not JSON" in err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    code, _, err = run_cli("eval", str(float_file))
    assert code == 2 and "onnxruntime is not installed: pip install 'rspnet-zoo[export]'" in err


def test_a_torch_reference_still_loads_a_torch_runner():
    run = load_runner("rspnet_small.synth", optimize=True)
    assert isinstance(run, TorchRunner) and run.num_classes == 9
    with pytest.raises(ZooError, match="no such ONNX file"):
        load_runner("nowhere.onnx")
