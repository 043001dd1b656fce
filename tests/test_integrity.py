"""Nothing silently wrong: weight files are checked against their own sha256 and for NaN/Inf on load,
spec documents are refused for non-finite normalisation, duplicate keys and oversized numbers."""

from __future__ import annotations

import json
import math
import struct

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from rspnet_zoo.errors import SpecError, WeightsError, ZooError
from rspnet_zoo.resources import PACKAGE_WEIGHTS, shipped_specs
from rspnet_zoo.spec.io import canonical_dict, genotype_from_dict, parse_spec
from rspnet_zoo.spec.models import MAX_CLASSES
from rspnet_zoo.spec.schema import committed_schema
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.folder import build_folder
from rspnet_zoo.zoo.weights import TENSORS_SHA256, read_weights, tensors_sha256

SPEC = next(p for p in shipped_specs() if p.stem == "rspnet_small")


@pytest.fixture
def built(zoo_home):
    folder, _ = build_folder(SHIPPED["rspnet_small"], zoo_home, seed=1)
    return folder / "model.safetensors"


def flip_low_bit(file, nth_float: int = 1000) -> None:
    """Flip the lowest mantissa bit of one float32 in the data section: the value stays finite."""
    raw = bytearray(file.read_bytes())
    (header,) = struct.unpack("<Q", raw[:8])
    offset = 8 + header + 4 * nth_float
    before = struct.unpack("<f", raw[offset : offset + 4])[0]
    raw[offset] ^= 1
    assert math.isfinite(struct.unpack("<f", raw[offset : offset + 4])[0]) and before == before
    file.write_bytes(bytes(raw))


def save_unchecked(state, file, metadata) -> None:
    """What ``save_weights`` refuses to write (NaN, other dtypes), with a consistent hash: a hostile or
    damaged file that only the reader's checks can catch."""
    save_file(state, str(file), metadata={**metadata, TENSORS_SHA256: tensors_sha256(state)})


def with_nan(src, dest, key: str) -> None:
    state, meta = read_weights(src)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    save_unchecked(state, dest, meta)


def test_built_and_shipped_weights_carry_the_hash_of_their_tensors(built):
    for file in (built, *PACKAGE_WEIGHTS.glob("*.safetensors")):
        state, meta = read_weights(file)
        assert meta[TENSORS_SHA256] == tensors_sha256(state)


def test_the_hash_covers_names_dtypes_shapes_and_bytes():
    base = {"a": torch.arange(6, dtype=torch.float32), "b": torch.ones(2)}
    variants = [
        {"a2": base["a"], "b": base["b"]},
        {"a": base["a"].double(), "b": base["b"]},
        {"a": base["a"].reshape(2, 3), "b": base["b"]},
        {"a": base["a"] + 1, "b": base["b"]},
    ]
    assert len({tensors_sha256(base), *(tensors_sha256(v) for v in variants)}) == 5
    assert tensors_sha256(dict(reversed(base.items()))) == tensors_sha256(base)


def test_a_flipped_byte_is_refused_on_load(built):
    flip_low_bit(built)
    with pytest.raises(WeightsError, match=r"model\.safetensors: tensor data do not match the sha256"):
        timm.create_model("rspnet_small", pretrained=True, allow_untrained=True)  # the build, checked as loaded


def test_nan_is_refused_naming_the_first_bad_tensor(built, tmp_path):
    with safe_open(str(built), framework="pt") as f:
        floats = sorted(k for k in f.keys() if f.get_slice(k).get_dtype().startswith("F"))
    bad = tmp_path / "nan.safetensors"
    state, meta = read_weights(built)
    for key in (floats[-1], floats[3]):  # two bad tensors: the first in key order is named
        state[key] = state[key].clone().fill_(float("inf") if key == floats[-1] else float("nan"))
    save_unchecked(state, bad, meta)
    with pytest.raises(WeightsError, match=rf"nan\.safetensors: tensor '{floats[3]}' holds NaN or Inf"):
        read_weights(bad)
    bad.replace(built)
    with pytest.raises(WeightsError, match=rf"tensor '{floats[3]}' holds NaN"):
        timm.create_model("rspnet_small", pretrained=True, allow_untrained=True)


def test_legacy_files_without_the_hash_still_load_and_are_checked_for_nan(tmp_path):
    file = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(3)}, str(file))
    state, meta = read_weights(file)
    assert TENSORS_SHA256 not in meta and torch.equal(state["w"], torch.ones(3))
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        save_file({"w": torch.tensor([1.0, float("-inf")], dtype=dtype)}, str(file))
        with pytest.raises(WeightsError, match="tensor 'w' holds NaN or Inf"):
            read_weights(file)


@pytest.mark.parametrize("damage", ["flip", "nan"])
def test_cli_refuses_damaged_weights_in_one_line(damage, built, tmp_path, run_cli):
    weights = tmp_path / "damaged.safetensors"
    if damage == "flip":
        weights.write_bytes(built.read_bytes())
        flip_low_bit(weights)
    else:
        with safe_open(str(built), framework="pt") as f:
            key = sorted(f.keys())[0]
        with_nan(built, weights, key)
    code, out, err = run_cli("build", str(SPEC), "--out", str(tmp_path / "out"), "--weights", str(weights))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "damaged.safetensors" in err and "Traceback" not in err
    assert ("do not match the sha256" if damage == "flip" else "holds NaN or Inf") in err
    assert not (tmp_path / "out" / "rspnet_small").exists()


def spec_text(**defaults) -> str:
    doc = canonical_dict(SHIPPED["rspnet_small"])
    doc["defaults"] = {**doc["defaults"], **defaults}
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("defaults", "where"),
    [
        (dict(std=[0.2, 0.0, 0.2]), "/defaults/std/1"),
        (dict(std=[0.2, 0.2, -1.0]), "/defaults/std/2"),
        (dict(std=[float("nan"), 1.0, 1.0]), "/defaults/std/0"),
        (dict(mean=[0.5, float("inf"), 0.5]), "/defaults/mean/1"),
    ],
)
def test_mean_and_std_must_be_finite_and_std_positive(defaults, where):
    doc = json.loads(spec_text())
    doc["defaults"].update(defaults)
    with pytest.raises(SpecError) as e:
        genotype_from_dict(doc)
    assert e.value.pointer == where


def test_the_schema_document_states_that_std_is_positive():
    std = committed_schema()["$defs"]["Defaults"]["properties"]["std"]
    assert std["items"]["exclusiveMinimum"] == 0


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ('{"a": 1, "b": {"c": 2, "c": 3}}', "/b/c", "duplicate key"),
        ('{"x": [1, ' + "9" * 5000 + "]}", "/x/1", "5000 digits"),
        ('{"x": [1, -' + "9" * 70 + ".5e1]}", "/x/1", "72 digits"),
        ('{"x": {"y": NaN}}', "/x/y", "NaN is not JSON"),
        ('{"y": -Infinity}', "/y", "-Infinity is not JSON"),
        ('{"y": 1e999}', "/y", "overflows"),
    ],
)
def test_spec_json_is_strict(text, where, reason):
    with pytest.raises(SpecError, match=reason) as e:
        parse_spec(text, source="s.json")
    assert e.value.pointer == where and str(e.value).startswith(f"s.json: {where}: ")


def test_a_duplicate_key_in_a_real_spec_is_named(tmp_path, run_cli):
    text = spec_text().replace('"defaults": {', '"defaults": {"num_classes": 3, ', 1)
    spec = tmp_path / "dup.json"
    spec.write_text(text)
    code, out, err = run_cli("validate", str(spec))
    assert code == 2 and err.strip().endswith(
        f"{spec}: /defaults/num_classes: duplicate key (JSON objects need unique keys)"
    )


def test_the_class_cap_covers_every_override(tmp_path, run_cli):
    over = MAX_CLASSES + 1
    with pytest.raises(ZooError, match=f"num_classes={over}: the spec format allows 0 to"):
        timm.create_model("rspnet_small", num_classes=over)
    code, out, err = run_cli("build", str(SPEC), "--out", str(tmp_path), "--num-classes", str(over))
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"num_classes={over}" in err
    assert list(tmp_path.iterdir()) == []


def wide_head_spec(classes: int) -> dict:
    """rspnet_small with the widest fusion head the format allows and a 3x3 classifier."""
    d = canonical_dict(SHIPPED["rspnet_small"])
    d["head"].update(channels=4096, classifier_kernel=3)
    d["defaults"].update(num_classes=classes, class_names=None)
    return d


def test_the_parameter_cap_covers_head_and_classifier(tmp_path, run_cli, monkeypatch):
    from rspnet_zoo.nn.heads import HEADS
    from rspnet_zoo.spec.plan import MAX_PARAMETERS, lower

    # the classifier alone (9 * 4096 * classes weights) passes the cap somewhere between these counts
    over = MAX_PARAMETERS // (9 * 4096) + 1
    huge = wide_head_spec(over * 5 // 3)  # about 3.3e9 parameters in all, nearly all of them the classifier
    with pytest.raises(SpecError, match=r"^/head: the network would have over 2e\+09 parameters"):
        genotype_from_dict(huge)
    spec = tmp_path / "huge.json"
    spec.write_text(json.dumps(huge))
    code, _, err = run_cli("validate", str(spec))
    assert code == 2 and "/head: the network would have over 2e+09 parameters" in err

    # a width that fits at the spec's 19 classes is refused when an override asks for 100,000, before any
    # layer is allocated (a 3.7e9-parameter model would take 15 GB)
    fits = genotype_from_dict(wide_head_spec(19))
    plan = lower(fits)
    bound = HEADS["fusion"].max_parameters(plan.head_inputs, None, fits.head, MAX_CLASSES)
    assert bound > MAX_PARAMETERS
    monkeypatch.setattr(torch.nn.Conv2d, "__init__", lambda *a, **k: pytest.fail("a layer was allocated"))
    with pytest.raises(SpecError, match=r"over 2e\+09 parameters with 100,000 classes"):
        timm.create_model("rspnet", genotype=fits, num_classes=MAX_CLASSES)
    fits_file = tmp_path / "fits.json"
    fits_file.write_text(json.dumps(wide_head_spec(19)))
    code, _, err = run_cli("build", str(fits_file), "--out", str(tmp_path / "out"), "--num-classes", str(MAX_CLASSES))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "100,000 classes" in err
    assert not (tmp_path / "out" / "rspnet_small").exists()
