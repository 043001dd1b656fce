"""Int8 exports: static post-training quantization, checked against the float file, its settings in the file,
sensitive layers kept float when asked to agree more, and the file evaluated as it runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from rspnet_zoo.errors import ZooError
from rspnet_zoo.interop.export import export_model, read_metadata
from rspnet_zoo.interop.quantize import Calibration, quantize_model, read_quantization
from rspnet_zoo.predict.runtime import OnnxRunner
from rspnet_zoo.spec.io import spec_sha256
from rspnet_zoo.training.tasks import EvalRequest, run_eval
from rspnet_zoo.zoo.registry import load_trained

SIZE = (64, 64)
CALIBRATION = Calibration(data="synthetic", images=16)
# on calibration-like images (the train split, past the calibration ones), int8 against float:
MIN_AGREEMENT = 0.97  # share of pixels of the same class
MIN_SQNR_DB = 20.0  # logits' signal-to-quantization-noise ratio


@pytest.fixture(scope="module")
def net():
    return load_trained("rspnet_small.synth")


@pytest.fixture(scope="module")
def int8(net, tmp_path_factory):
    file = tmp_path_factory.mktemp("int8") / "rspnet_small.int8.onnx"
    return file, quantize_model(net, file, SIZE, CALIBRATION)


def test_the_int8_file_carries_its_settings_and_is_close_to_float(net, int8):
    file, info = int8
    meta = read_metadata(file)
    assert meta["genotype_sha256"] == spec_sha256(net.genotype) and meta["name"] == "rspnet_small"
    assert json.loads(meta["class_names"]) == list(net.pretrained_cfg["label_names"])
    assert json.loads(meta["mean"]) == list(net.pretrained_cfg["mean"]) and meta["precision"] == "int8"
    q = read_quantization(meta)
    assert q == info["quantization"] and q["format"] == "QDQ" and q["tool"].startswith("onnxruntime")
    assert q["calibration"] == dict(data="synthetic", root=None, images=16, split="train", seed=0)
    assert {n["why"] for n in q["float_nodes"]} == {"input head", "output tail"}
    assert q["check"]["agreement"] >= MIN_AGREEMENT and q["check"]["logits_sqnr_db"] >= MIN_SQNR_DB
    assert info["bytes"] < 0.6 * info["float_bytes"] and info["sensitivity"] == []


def test_int8_outputs_stay_close_to_the_eager_model_on_a_calibration_like_image(net, int8):
    from rspnet_zoo.data import build_dataset

    image = build_dataset("synthetic", "train", size=SIZE)[100][0][None]  # past the calibration images
    with torch.no_grad():
        reference = net(image)
    quantized = OnnxRunner(int8[0])(image)
    assert (quantized.argmax(1) == reference.argmax(1)).float().mean() >= MIN_AGREEMENT
    noise = (quantized - reference).pow(2).sum() / reference.pow(2).sum()
    assert -10 * torch.log10(noise) >= MIN_SQNR_DB


def test_eval_reports_the_int8_files_miou_against_float(int8, tmp_path):
    float_file = tmp_path / "float.onnx"
    export_model(load_trained("rspnet_small.synth"), "onnx", float_file, SIZE)
    options = dict(data="synthetic", size=SIZE, length=16, batch_size=8)
    float_miou = run_eval(EvalRequest(model=str(float_file), **options))["miou"]
    int8_miou = run_eval(EvalRequest(model=str(int8[0]), **options))["miou"]
    assert abs(int8_miou - float_miou) <= 0.02


def small_cnn() -> nn.Module:
    """Random weights whose classes change from pixel to pixel: an int8 copy disagrees somewhere."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 5, 1)]
    return nn.Sequential(*layers).eval()


def test_asking_more_agreement_keeps_the_most_sensitive_layers_float(tmp_path):
    file = tmp_path / "cnn.int8.onnx"
    info = quantize_model(small_cnn(), file, (32, 32), Calibration(images=4), min_agreement=1.0)
    meta = read_metadata(file)
    q = read_quantization(meta)
    assert info["precision"] == meta["precision"] == "int8+float32"
    sensitive = [n["node"] for n in q["float_nodes"] if n["why"] == "sensitive"]
    ranked = [row["node"] for row in info["sensitivity"]]
    assert sensitive and sensitive == ranked[: len(sensitive)]  # the most sensitive first
    assert [row["sqnr_db"] for row in info["sensitivity"]] == sorted(row["sqnr_db"] for row in info["sensitivity"])
    assert q["check"]["agreement"] == 1.0


def test_kept_float_nodes_are_named_in_the_file(tmp_path):
    file = tmp_path / "cnn.int8.onnx"
    info = quantize_model(
        small_cnn(), file, (32, 32), Calibration(images=4), min_agreement=0.0, keep_float=("/4/Conv",)
    )
    assert {"node": "/4/Conv", "why": "asked"} in info["quantization"]["float_nodes"]
    assert {"node": "/0/Conv", "why": "input head"} in info["quantization"]["float_nodes"]
    assert info["precision"] == "int8+float32"
    with pytest.raises(ZooError, match="--keep-float /nowhere: no such node"):
        quantize_model(small_cnn(), tmp_path / "x.onnx", (32, 32), Calibration(images=4), keep_float=("/nowhere",))
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--quantize", "int4", "--calibration", "synthetic"], "unknown precision 'int4': one of int8"),
        (["--quantize", "int8"], "--quantize needs --calibration DATA"),
        (["--quantize", "int8", "--calibration", "synthetic", "--format", "torchscript"], "writes ONNX files"),
        (["--quantize", "int8", "--calibration", "imagenet"], "unknown data set 'imagenet'"),
        (["--quantize", "int8", "--calibration", "camvid"], "needs a root folder"),
        (["--quantize", "int8", "--calibration", "synthetic", "--calibration-images", "5000"], "has 2000 images"),
        (["--quantize", "int8", "--calibration", "synthetic", "--calibration-images", "0"], "--calibration-images"),
        (["--quantize", "int8", "--calibration", "synthetic", "--min-agreement", "2"], "--min-agreement"),
    ],
)
def test_quantize_refusals_are_one_line_and_write_nothing(run_cli, tmp_path, args, needle):
    out = tmp_path / "m.onnx"
    code, _, err = run_cli("export", "rspnet_small.synth", "--size", "32x32", "--out", str(out), *args)
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert not out.exists()


def test_cli_quantized_export_then_eval(run_cli, tmp_path):
    out = tmp_path / "m.int8.onnx"
    code, stdout, err = run_cli(
        "export", "rspnet_small.synth", "--quantize", "int8", "--calibration", "synthetic",
        "--calibration-images", "8", "--size", "32x32", "--out", str(out), "--json",
    )  # fmt: skip
    assert code == 0, err
    info = json.loads(stdout)
    assert info["path"] == str(out) and info["precision"] == "int8"
    assert info["quantization"]["calibration"]["images"] == 8
    code, stdout, err = run_cli("eval", str(out), "--size", "32x32", "--length", "4", "--json")
    assert code == 0, err
    assert 0.0 <= json.loads(stdout)["miou"] <= 1.0 and np.isfinite(json.loads(stdout)["miou"])


def _qdq_graph():
    """x -> Q -> DQ -> Pad(zero) -> Q -> DQ -> y, and Shape(DQ) -> s: what ``tidy`` rewrites."""
    from onnx import TensorProto, helper, numpy_helper

    constants = [
        numpy_helper.from_array(np.array(0.05, np.float32), "scale"),
        numpy_helper.from_array(np.array(100, np.uint8), "zero"),
        numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 3, 1], np.int64), "pads"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["d"]),
        helper.make_node("Pad", ["d", "pads"], ["p"], mode="constant"),
        helper.make_node("QuantizeLinear", ["p", "scale", "zero"], ["pq"]),
        helper.make_node("DequantizeLinear", ["pq", "scale", "zero"], ["y"]),
        helper.make_node("Shape", ["d"], ["s"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 6])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("s", TensorProto.INT64, None),
        ],
        constants,
    )
    graph.value_info.append(helper.make_tensor_value_info("p", TensorProto.FLOAT, None))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_tidy_pads_in_uint8_and_reads_shapes_from_the_quantized_tensor_exactly():
    import onnxruntime

    from rspnet_zoo.interop.quantize import tidy

    model = _qdq_graph()
    x = np.random.default_rng(0).normal(size=(1, 2, 5, 6)).astype(np.float32)
    before = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    assert tidy(model.graph) == 2
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["QuantizeLinear", "Pad", "DequantizeLinear", "Shape"]  # no float pad, no dequantized shape
    after = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_tidy_leaves_a_padding_that_changes_the_quantization():
    from onnx import numpy_helper

    from rspnet_zoo.interop.quantize import tidy

    model = _qdq_graph()
    model.graph.initializer.append(numpy_helper.from_array(np.array(0.1, np.float32), "other"))
    model.graph.node[3].input[1] = "other"  # the padded tensor is requantized: no uint8 pad does that
    assert tidy(model.graph) == 1 and [n.op_type for n in model.graph.node].count("Pad") == 1
    assert any(n.op_type == "Pad" and n.input[0] == "d" for n in model.graph.node)


def test_the_int8_file_has_no_float_padding_or_dequantized_shapes(int8):
    import onnx

    graph = onnx.load(str(int8[0])).graph
    producer = {out: n.op_type for n in graph.node for out in n.output}
    assert any(n.op_type == "Pad" for n in graph.node)  # rspnet_small pads before its factorized reductions
    for node in graph.node:
        if node.op_type in ("Shape", "Pad"):
            assert producer.get(node.input[0]) != "DequantizeLinear", node.name
