"""Exports: each format is written, reloaded in its runtime, gives the eager outputs and carries metadata."""

import json
import warnings

import pytest
import torch
from torch import nn

from rspnet_zoo import optimize, spec_sha256
from rspnet_zoo.errors import ZooError
from rspnet_zoo.interop.export import export_model, read_metadata
from rspnet_zoo.zoo.registry import load_trained

SIZE = (64, 128)


@pytest.fixture(scope="module")
def net():
    return load_trained("rspnet_small.synth")


def reload_and_run(fmt, file, x):
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    if fmt == "torchscript":
        return torch.jit.load(str(file))(x)
    return torch.export.load(str(file)).module()(x)


def check_round_trip(net, fmt, file, dynamic, fast=None):
    info = export_model(fast or net, fmt, file, SIZE, dynamic_size=dynamic, reference=net)
    assert file.is_file() and info["max_abs_diff"] <= 1e-4
    sizes = [SIZE, (SIZE[0] + 7, SIZE[1] + 5)] if dynamic else [SIZE]
    assert info["checked_sizes"] == [list(s) for s in sizes]
    with torch.no_grad():
        for h, w in sizes:
            x = torch.randn(1, 3, h, w)
            assert (reload_and_run(fmt, file, x) - net(x)).abs().max().item() <= 1e-4
    meta = read_metadata(file)
    assert meta["genotype_sha256"] == spec_sha256(net.genotype)
    assert json.loads(meta["class_names"]) == list(net.pretrained_cfg["label_names"])


def test_onnx_of_the_optimised_model_runs_any_size_in_onnxruntime(net, tmp_path, capfd):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        check_round_trip(net, "onnx", tmp_path / "m.onnx", dynamic=True, fast=optimize(net))
    assert not [str(w.message) for w in seen if issubclass(w.category, UserWarning)]  # the exporter's notes
    assert capfd.readouterr().err == ""


def test_torchscript_round_trip(net, tmp_path):
    check_round_trip(net, "torchscript", tmp_path / "m.pt", dynamic=False)


@pytest.mark.slow  # seconds of subprocesses or training; the default suite keeps a faster check of the same path
def test_torch_export_round_trip(net, tmp_path):
    check_round_trip(net, "exported", tmp_path / "m.pt2", dynamic=False)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "exported"])
def test_every_format_of_the_optimised_model_at_any_size(net, tmp_path, fmt):
    check_round_trip(net, fmt, tmp_path / f"m.{fmt}", dynamic=True, fast=optimize(net))


def test_a_mismatching_export_writes_nothing(tmp_path):
    torch.manual_seed(0)
    model, other = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
    with pytest.raises(ZooError, match="differs from the eager model"):
        export_model(other, "onnx", tmp_path / "m.onnx", (8, 8), reference=model)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_and_its_errors(tmp_path, run_cli):
    out = tmp_path / "m.pt"
    code, stdout, _ = run_cli(
        "export", "rspnet_small.synth", "--format", "torchscript", "--size", "32x64", "--out", str(out), "--json"
    )
    assert code == 0 and json.loads(stdout)["path"] == str(out) and out.is_file()
    code, _, err = run_cli("export", "rspnet_small.synth", "--format", "tflite")
    assert code == 2 and "tflite" in err and "Traceback" not in err
    code, _, err = run_cli("export", "no_such_model", "--format", "onnx")
    assert code == 2 and "no_such_model" in err.replace("\n", " ")
