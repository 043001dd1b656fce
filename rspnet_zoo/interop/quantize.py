"""Int8 ONNX files: static post-training quantization by onnxruntime's tooling, checked against the float file.

The model is folded first (``nn.fold``: BatchNorms after concatenations and before transitions would
otherwise stay float ops between int8 ones), exported to a float ONNX file (``export.py``, checked against
the eager model), prepared by onnxruntime's ``quant_pre_process`` and quantized by ``quantize_static`` in
the QDQ format: weights int8, symmetric, per output channel; activations uint8, asymmetric, per tensor,
their ranges calibrated (min/max) on images of a data set's train split, which evaluation does not read.
Two ends stay float by design: the weighted nodes that read the image (the stem's first convolution: three
input channels give int8 kernels nothing to gain, and the image is not quantized at all), and the
weight-free tail that makes the outputs (the logits' upsampling to the input size: int8 there would
quantize and dequantize the largest tensor of the network for an argmax).

The int8 file is then checked against the float file on ``CHECK_IMAGES`` further images of the same
split: the share of pixels whose class agrees (``agreement``) and the logits' signal-to-quantization-noise
ratio. Below ``min_agreement`` each int8 layer's sensitivity is measured (the logits' SQNR with that layer
alone in int8) and the most sensitive stay float, 1, 2, 4, ... up to 16 or a quarter of them (``MAX_FLOAT``),
until the file agrees: mixed precision, stated in the file. When none agrees, nothing is written and the error
names the most sensitive layers. The file carries the float export's metadata, ``precision`` and
``quantization`` (the settings, the calibration data and count, the nodes kept float and why, the check).

Between quantization and the check, ``tidy`` makes exact rewrites of the QDQ graph that onnxruntime does
not make itself: a shape read from the quantized tensor rather than a dequantized copy (a dynamic-size file
computes its resize targets from shapes), and a zero padding done in uint8 with the zero point where its
input and output share their quantization.
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import nn

from rspnet_zoo.data import build_dataset
from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import atomic_path, writable_output
from rspnet_zoo.interop.export import export_model
from rspnet_zoo.nn.fold import optimize
from rspnet_zoo.predict.runtime import require, session_options

PRECISIONS = ("int8",)
CHECK_IMAGES = 8
DEFAULT_MIN_AGREEMENT = 0.98
MAX_FLOAT = (16, 0.25)  # kept float for agreement, at most: 16 layers or a quarter of them, the more
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
SENSITIVITY_SHOWN = 10
SENSITIVITY_IMAGES = 2
BY_DESIGN = ("input head", "output tail")  # float in every file: not what makes one mixed precision


@dataclass(frozen=True)
class Calibration:
    """Where the activation ranges come from: the first ``images`` images of ``data``'s ``split``."""

    data: str = "synthetic"
    root: Path | None = None
    images: int = 64
    split: str = "train"
    seed: int = 0  # synthetic: the stream


def _settings(calibration: Calibration) -> dict[str, Any]:
    onnxruntime = require("onnxruntime")
    return dict(
        tool=f"onnxruntime.quantization {onnxruntime.__version__}",
        format="QDQ",
        weights="int8, symmetric, per output channel",
        activations="uint8, asymmetric, per tensor",
        calibration_method="minmax",
        reduce_range=False,
        calibration=dict(asdict(calibration), root=None if calibration.root is None else str(calibration.root)),
    )


def calibration_images(calibration: Calibration, size: tuple[int, int] | None) -> tuple[list, list]:
    """``calibration.images`` images for the ranges and ``CHECK_IMAGES`` after them for the check, as
    ``1x3xHxW`` float32 arrays, normalised as for training; for a fixed-size file, of that ``size`` (the
    synthetic set is drawn at it, other images are resized)."""
    if calibration.images < 1:
        raise ZooError(f"--calibration-images must be at least 1, not {calibration.images}")
    drawn = dict(size=size) if calibration.data == "synthetic" and size is not None else {}
    dataset = build_dataset(calibration.data, calibration.split, root=calibration.root, seed=calibration.seed, **drawn)
    wanted = calibration.images + CHECK_IMAGES
    if len(dataset) < wanted:
        raise ZooError(
            f"the {calibration.data} {calibration.split} split has {len(dataset)} images; {calibration.images} "
            f"for calibration and {CHECK_IMAGES} to check the result need {wanted}"
        )
    arrays = []
    for i in range(wanted):
        image = dataset[i][0][None]
        if size is not None and tuple(image.shape[-2:]) != tuple(size):
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
        arrays.append(image.numpy().astype(np.float32))
    return arrays[: calibration.images], arrays[calibration.images :]


class _Reader:
    """onnxruntime's calibration data reader over a list of input arrays."""

    def __init__(self, input_name: str, arrays: list[np.ndarray]):
        self.items = iter([{input_name: a} for a in arrays])

    def get_next(self) -> dict | None:
        return next(self.items, None)


def input_head(graph: Any) -> list[str]:
    """The weighted nodes that read the graph's input (the stem's first convolution): they stay float."""
    inputs = {i.name for i in graph.input}
    return [n.name for n in graph.node if set(n.input) & inputs and n.op_type in WEIGHTED_OPS]


def output_tail(graph: Any) -> list[str]:
    """The weight-free nodes that make the graph's outputs (the logits' upsampling): they stay float."""
    outputs = {o.name for o in graph.output}
    return [n.name for n in graph.node if set(n.output) & outputs and n.op_type not in WEIGHTED_OPS]


@dataclass
class _Job:
    """One quantization: the float export, its prepared graph, the calibration ranges (computed once: they
    depend on the float graph alone, whatever stays float) and the images the results are checked on."""

    work: Path
    float_file: Path
    prepared: Path
    input_name: str
    calibration: list[np.ndarray]
    check: list[np.ndarray]

    def quantize(self, dest: Path, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
        """The prepared graph in int8 but for ``exclude``; with ``only``, those nodes alone in int8."""
        quantization = require("onnxruntime.quantization")
        quantization.quantize_static(
            str(self.prepared),
            str(dest),
            _Reader(self.input_name, self.calibration),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            reduce_range=False,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            nodes_to_quantize=list(only) if only is not None else None,
            nodes_to_exclude=list(exclude),
            calibrate_method=quantization.CalibrationMethod.MinMax,
            calibration_cache_path=str(self.work / "ranges.json"),
        )
        onnx = require("onnx")
        proto = onnx.load(str(dest))
        tidy(proto.graph)
        onnx.save(proto, str(dest))

    def outputs(self, file: Path, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        onnxruntime = require("onnxruntime")
        session = onnxruntime.InferenceSession(str(file), session_options(), providers=["CPUExecutionProvider"])
        return [session.run(None, {self.input_name: x})[0] for x in images]

    @functools.cached_property
    def reference(self) -> list[np.ndarray]:
        """The float file's logits on the check images."""
        return self.outputs(self.float_file, self.check)

    def compare(self, int8_file: Path, images: int | None = None) -> dict[str, float]:
        """How far ``int8_file`` is from the float file on the (first ``images``) check images: the share of
        pixels whose class agrees, the logits' SQNR (dB) and their largest absolute difference."""
        reference = self.reference[:images]
        quantized = self.outputs(int8_file, self.check[: len(reference)])
        agree = pixels = 0
        totals, worst = [0.0, 0.0], 0.0
        for a, b in zip(reference, quantized):
            agree += int((a.argmax(1) == b.argmax(1)).sum())
            pixels += a.shape[0] * a.shape[2] * a.shape[3]
            totals[0] += float((a.astype(np.float64) ** 2).sum())
            totals[1] += float(((a.astype(np.float64) - b) ** 2).sum())
            worst = max(worst, float(np.abs(a - b).max()))
        sqnr = None if totals[1] <= 0 else 10 * math.log10(max(totals[0], 1e-30) / totals[1])  # None: no noise
        return dict(agreement=agree / pixels, logits_sqnr_db=sqnr, max_abs_diff=worst)

    def sensitivity(self, int8_file: Path, exclude: Sequence[str]) -> list[dict]:
        """Per-layer sensitivity, most sensitive first: every node that runs in int8 in ``int8_file``, with the
        logits' SQNR (dB) against the float file when it alone is quantized (its inputs and weights, as
        ``nodes_to_quantize`` does it), on the first ``SENSITIVITY_IMAGES`` check images. Keeping a node in
        float (``nodes_to_exclude``) undoes exactly that."""
        onnx = require("onnx")
        graph = onnx.load(str(int8_file)).graph
        ops = {n.name: n.op_type for n in onnx.load(str(self.prepared)).graph.node}
        alone = self.work / "alone.onnx"
        rows = []
        for node in sorted(_int8_readers(graph) - set(exclude)):
            self.quantize(alone, only=[node])
            sqnr = self.compare(alone, SENSITIVITY_IMAGES)["logits_sqnr_db"]
            rows.append(dict(node=node, op=ops.get(node, "?"), sqnr_db=None if sqnr is None else round(sqnr, 2)))
        return sorted(rows, key=lambda r: math.inf if r["sqnr_db"] is None else r["sqnr_db"])


def _attribute(node: Any, name: str, default: Any) -> Any:
    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else require("onnx").helper.get_attribute_value(found)


def _same_quantization(graph: Any, a: Any, b: Any) -> bool:
    """Whether (De)QuantizeLinear nodes ``a`` and ``b`` name the same constant scale and zero point."""
    numpy_helper = require("onnx").numpy_helper
    constants = {t.name: t for t in graph.initializer}
    if len(a.input) != 3 or len(b.input) != 3:
        return False
    if not all(name in constants for name in (*a.input[1:], *b.input[1:])):
        return False
    return all(
        np.array_equal(numpy_helper.to_array(constants[x]), numpy_helper.to_array(constants[y]))
        for x, y in zip(a.input[1:], b.input[1:])
    )


def tidy(graph: Any) -> int:
    """Exact rewrites of a QDQ ``graph`` in place that onnxruntime's optimiser does not make; returns how many.

    - ``Shape(DequantizeLinear(q))`` reads ``q``: the same shape without dequantizing (and, in onnxruntime's
      NHWC int8 layout, transposing back) a whole feature map.
    - ``QuantizeLinear(Pad(DequantizeLinear(q)))`` with zero padding, where both ends share scale and zero
      point, becomes ``Pad(q)`` padding with the zero point: zero is exactly the zero point, the other values
      dequantize and quantize back to themselves.

    Nodes and constants no longer read are dropped, and the recorded types of tensors gone or retyped."""
    producer = {out: n for n in graph.node for out in n.output}
    readers: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)
    rewrites, retyped = 0, set()
    for node in graph.node:
        source = producer.get(node.input[0]) if node.input else None
        if source is None or source.op_type != "DequantizeLinear":
            continue
        if node.op_type == "Shape":
            node.input[0] = source.input[0]
            rewrites += 1
        elif node.op_type == "Pad" and _attribute(node, "mode", b"constant") == b"constant":
            after = readers.get(node.output[0], [])
            zero_padding = len(node.input) < 3 or not node.input[2]
            if not (zero_padding and len(after) == 1 and after[0].op_type == "QuantizeLinear"):
                continue
            if not _same_quantization(graph, source, after[0]):
                continue
            node.input[0] = source.input[0]
            node.input.extend([""] * (3 - len(node.input)))
            node.input[2] = source.input[2]  # the zero point: what 0.0 quantizes to
            for reader in readers.get(after[0].output[0], []):
                reader.input[:] = [node.output[0] if name == after[0].output[0] else name for name in reader.input]
            retyped.add(node.output[0])
            rewrites += 1
    needed = {o.name for o in graph.output}
    alive = []
    for node in reversed(graph.node):
        if set(node.output) & needed:
            alive.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(alive))
    produced = {out for n in graph.node for out in n.output}
    kept = [v for v in graph.value_info if v.name in produced and v.name not in retyped]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    used = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used)
    return rewrites


def _int8_readers(graph: Any) -> set[str]:
    """The nodes of a QDQ graph that read a dequantized tensor: the ones that run in int8."""
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    qdq = ("QuantizeLinear", "DequantizeLinear")
    return {n.name for n in graph.node if n.op_type not in qdq and set(n.input) & dequantized}


def _write(int8_file: Path, dest: Path, metadata: dict[str, str]) -> None:
    onnx = require("onnx")
    proto = onnx.load(str(int8_file))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    with atomic_path(dest) as tmp:
        onnx.save(proto, str(tmp))


def quantize_model(
    model: nn.Module,
    dest: str | Path,
    size: tuple[int, int],
    calibration: Calibration,
    *,
    precision: str = "int8",
    dynamic_size: bool = False,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    keep_float: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Write ``model`` as a quantized ONNX file at ``dest`` (see the module docstring); ``keep_float`` names
    nodes of the float graph to keep in float besides. Returns what was written and the check's figures."""
    if precision not in PRECISIONS:
        raise ZooError(f"unknown precision '{precision}': one of {', '.join(PRECISIONS)}")
    if not 0.0 <= min_agreement <= 1.0:
        raise ZooError(f"--min-agreement is a share of pixels in [0, 1], not {min_agreement}")
    onnx = require("onnx")
    quant_pre_process = require("onnxruntime.quantization.shape_inference").quant_pre_process
    dest = writable_output(dest)
    settings = _settings(calibration)
    arrays, check = calibration_images(calibration, None if dynamic_size else size)
    with tempfile.TemporaryDirectory(prefix="rspnet-zoo-quantize-") as tmp:
        work = Path(tmp)
        float_file, prepared, int8_file = work / "float.onnx", work / "prepared.onnx", work / "int8.onnx"
        exported = export_model(optimize(model), "onnx", float_file, size, dynamic_size=dynamic_size, reference=model)
        quant_pre_process(str(float_file), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        unknown = next((n for n in keep_float if n not in {node.name for node in graph.node}), None)
        if unknown is not None:
            name = exported["metadata"]["name"]
            raise ZooError(f"--keep-float {unknown}: no such node in the float graph of '{name}'")
        job = _Job(work, float_file, prepared, graph.input[0].name, arrays, check)
        why = {name: "input head" for name in input_head(graph)}
        why.update({name: "output tail" for name in output_tail(graph)})
        why.update({name: "asked" for name in keep_float})
        job.quantize(int8_file, list(why))
        checked = job.compare(int8_file)
        ranked: list[dict] = []
        if checked["agreement"] < min_agreement:
            ranked = job.sensitivity(int8_file, list(why))
            noisy = [r["node"] for r in ranked if r["sqnr_db"] is not None]  # float for the others changes nothing
            candidates = noisy[: max(MAX_FLOAT[0], int(MAX_FLOAT[1] * len(ranked)))]
            count = 1
            while checked["agreement"] < min_agreement and count <= len(candidates):
                trial = dict(why, **{name: "sensitive" for name in candidates[:count]})
                job.quantize(int8_file, list(trial))
                checked = job.compare(int8_file)
                if checked["agreement"] >= min_agreement:
                    why = trial
                count = min(2 * count, len(candidates)) if count < len(candidates) else count + 1
            if checked["agreement"] < min_agreement:
                worst = ", ".join(f"{r['node']} ({r['sqnr_db']} dB)" for r in ranked[:3])
                raise ZooError(
                    f"the int8 file agrees with the float one on {checked['agreement']:.2%} of the pixels even with "
                    f"its {len(candidates)} most sensitive layers in float (at least {min_agreement:.2%} asked; "
                    f"most sensitive alone: {worst}): nothing written"
                )
        mixed = any(reason not in BY_DESIGN for reason in why.values())
        quantization = dict(
            settings,
            float_nodes=[dict(node=name, why=reason) for name, reason in why.items()],
            check=dict(images=len(check), min_agreement=min_agreement, **checked),
        )
        metadata = dict(
            exported["metadata"],
            precision=f"{precision}+float32" if mixed else precision,
            quantization=json.dumps(quantization),
        )
        _write(int8_file, dest, metadata)
    return dict(
        path=str(dest),
        format="onnx",
        precision=metadata["precision"],
        size=list(size),
        dynamic_size=dynamic_size,
        bytes=dest.stat().st_size,
        float_bytes=exported["bytes"],
        metadata=metadata,
        quantization=quantization,
        sensitivity=ranked[:SENSITIVITY_SHOWN],
        float_max_abs_diff=exported["max_abs_diff"],
    )


def read_quantization(metadata: dict[str, str]) -> dict[str, Any] | None:
    """The quantization settings an exported file states, or None for a float file."""
    return json.loads(metadata["quantization"]) if "quantization" in metadata else None
