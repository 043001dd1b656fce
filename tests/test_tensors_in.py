"""One checked path for every tensor in and out (issue 30, item 2).

Every way weights enter (a zoo name or tag, ``local-dir:``, ``pretrained_cfg_overlay=dict(file=...)``,
``build --weights``, ``train --resume``, ``convert``, the template search's stem file) goes through
``zoo.weights``: stated dtypes only (never cast), finite values (complex too), the recorded hash, the shapes the
spec needs; and the tensors loaded are the ones checked. Every way weights leave (train, resume, convert,
build) refuses to write NaN or Inf.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reference_checkpoints import random_state, reference_layout
from safetensors.torch import save_file

from rspnet_zoo.errors import WeightsError, ZooError
from rspnet_zoo.resources import PACKAGE_WEIGHTS
from rspnet_zoo.spec.io import load_spec
from rspnet_zoo.training.loop import load_checkpoint, train
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.folder import build_folder
from rspnet_zoo.zoo.registry import create_genotype_net
from rspnet_zoo.zoo.weights import (
    TENSOR_DTYPES,
    TENSORS_SHA256,
    check_fit,
    check_tensors,
    read_weights,
    save_weights,
    tensors_sha256,
    trained,
)

TINY = Path(__file__).parent / "data" / "tiny_net.json"
SYNTH = PACKAGE_WEIGHTS / "rspnet_small.synth.safetensors"
SMALL = SHIPPED["rspnet_small"]
ALL_DTYPES = (
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
    torch.complex64,
)


def save_unchecked(state: dict, file: Path, metadata: dict | None = None) -> Path:
    """What ``save_weights`` refuses to write, with a consistent hash: only the reader's checks can catch it."""
    save_file(state, str(file), metadata={**(metadata or {}), TENSORS_SHA256: tensors_sha256(state)})
    return file


def one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def poisoned(kind: str, dtype: torch.dtype, size: int, at: int) -> torch.Tensor:
    t = torch.linspace(-1, 1, size).to(dtype)
    if kind != "ok":
        t = t.clone()
        t.view(-1)[at] = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}[kind] + (
            0j if dtype.is_complex else 0
        )
    return t


@st.composite
def state_dicts(draw):
    """1-6 tensors of any dtype safetensors stores, floating and complex ones maybe holding NaN or Inf."""
    names = draw(
        st.lists(
            st.from_regex(r"[a-z]{1,6}(\.[a-z0-9]{1,4}){0,2}", fullmatch=True), min_size=1, max_size=6, unique=True
        )
    )
    state = {}
    for name in names:
        dtype = draw(st.sampled_from(ALL_DTYPES))
        size = draw(st.integers(1, 5))
        inexact = dtype.is_floating_point or dtype.is_complex
        kind = draw(st.sampled_from(["ok", "nan", "inf", "-inf"])) if inexact else "ok"
        state[name] = poisoned(kind, dtype, size, draw(st.integers(0, size - 1)))
    return state


def first_fault(state: dict) -> str | None:
    for key in sorted(state):
        t = state[key]
        inexact = t.is_floating_point() or t.is_complex()
        if (inexact and not torch.isfinite(t.to(torch.complex64) if t.is_complex() else t.float()).all()) or (
            t.dtype not in TENSOR_DTYPES
        ):
            return key
    return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=state_dicts())
def test_the_reader_accepts_exactly_finite_tensors_of_the_stated_dtypes(state, tmp_path):
    """Files and in-memory checkpoints alike: refused iff a tensor is not finite or not of a stated dtype,
    in one line naming the first such tensor in key order; accepted ones come back bit-exact."""
    file = save_unchecked(state, tmp_path / "w.safetensors")
    bad = first_fault(state)
    if bad is None:
        loaded, _ = read_weights(file)
        assert all(torch.equal(loaded[k], state[k]) for k in state)
        assert check_tensors(state, "ckpt") == state
        return
    for read in (lambda: read_weights(file), lambda: check_tensors(state, "ckpt.pth")):
        with pytest.raises(WeightsError) as refused:
            read()
        assert f"tensor '{bad}'" in one_line(refused.value)
    with pytest.raises(WeightsError, match=f"refused to write weights: tensor '{bad}'"):
        save_weights(state, tmp_path / "out.safetensors", {})
    assert not (tmp_path / "out.safetensors").exists()


@st.composite
def mutations(draw):
    return draw(st.sampled_from(["none", "drop", "extra", "reshape", "integer"])), draw(st.integers(0, 10_000))


@settings(max_examples=40, deadline=None)
@given(mutation=mutations())
def test_the_fit_check_names_what_keeps_a_state_from_loading(mutation):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    own = net.state_dict()
    kind, pick = mutation
    keys = sorted(k for k, v in own.items() if v.is_floating_point())
    key = keys[pick % len(keys)]
    state = dict(own)
    expected = {
        "none": None,
        "drop": f"missing {key}",
        "extra": "unexpected extra.weight",
        "reshape": f"{key} has shape",
        "integer": f"{key} is int64, the model holds float32",
    }[kind]
    if kind == "drop":
        del state[key]
    elif kind == "extra":
        state["extra.weight"] = torch.zeros(1)
    elif kind == "reshape":
        state[key] = torch.zeros(own[key].numel() + 1)
    elif kind == "integer":
        state[key] = own[key].long()
    if expected is None:
        check_fit(own, state, "w.safetensors")
        return
    with pytest.raises(WeightsError, match="w.safetensors does not match the spec") as refused:
        check_fit(own, state, "w.safetensors")
    assert expected in one_line(refused.value)


# -- zoo loads: the file checked is the file loaded ---------------------------------------------------------


def trained_file(tmp_path: Path, name: str = "mine.safetensors", poison: str | None = None) -> tuple[Path, dict]:
    """rspnet_small weights with the spec's 19 classes, recorded as trained; ``poison`` a tensor made NaN."""
    state = {k: v.clone() for k, v in create_genotype_net("rspnet_small", SMALL).state_dict().items()}
    metadata = {**read_weights(SYNTH)[1], **trained("synthetic", {"miou": 0.5})}
    metadata.pop(TENSORS_SHA256)
    if poison is None:
        save_weights(state, tmp_path / name, metadata)
    else:
        state[poison].view(-1)[0] = float("nan")
        save_unchecked(state, tmp_path / name, metadata)
    return tmp_path / name, state


def test_an_overlay_file_is_the_file_checked_and_loaded_for_a_tag(tmp_path):
    """Regression: with a tag and pretrained_cfg_overlay=dict(file=...), the tag's file was checked and the
    overlay's loaded, NaN and all."""
    nan, _ = trained_file(tmp_path, "nan.safetensors", poison="classifier.bias")
    shutil.copy(nan, tmp_path / "nan2.safetensors")
    with pytest.raises(WeightsError, match=r"nan\.safetensors: tensor 'classifier\.bias' holds NaN") as refused:
        timm.create_model("rspnet_small.synth", pretrained=True, pretrained_cfg_overlay=dict(file=str(nan)))
    one_line(refused.value)


def test_an_overlay_file_is_loaded_for_an_untagged_name(tmp_path):
    """Regression: for an untagged name the overlay file was silently ignored (the zoo-home build was read)."""
    good, state = trained_file(tmp_path)
    model = timm.create_model("rspnet_small", pretrained=True, pretrained_cfg_overlay=dict(file=str(good)))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    nan, _ = trained_file(tmp_path, "nan.safetensors", poison="nodes.0.layer.0.weight")
    with pytest.raises(WeightsError, match=r"nan\.safetensors: tensor 'nodes\.0\.layer\.0\.weight' holds NaN"):
        timm.create_model("rspnet_small", pretrained=True, pretrained_cfg_overlay=dict(file=str(nan)))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (dict(pretrained_cfg=dict(url="https://example.com/w.pth")), "names url 'https://example.com/w.pth'"),
        (dict(pretrained_cfg_overlay=dict(state_dict={"w": torch.zeros(1)})), "names an in-memory state_dict"),
        (dict(pretrained_cfg_overlay=dict(file="weights.pth")), "weights.pth: zoo weights are safetensors files"),
    ],
)
def test_sources_that_would_load_unchecked_are_refused(kwargs, needle):
    with pytest.raises(WeightsError) as refused:
        timm.create_model("rspnet_small", pretrained=True, **kwargs)
    assert needle in one_line(refused.value)


def test_shapes_that_do_not_fit_under_a_valid_hash_are_one_line(tmp_path, run_cli):
    """Regression: a reshaped tensor with a consistent hash reached load_state_dict (a traceback)."""
    folder, _ = build_folder(SMALL, tmp_path / "built", seed=1)
    state, metadata = read_weights(folder / "model.safetensors")
    state["classifier.bias"] = torch.zeros(7)
    metadata.pop(TENSORS_SHA256)
    save_unchecked(state, folder / "model.safetensors", metadata)
    with pytest.raises(WeightsError) as refused:
        timm.create_model(f"local-dir:{folder}", pretrained=True, allow_untrained=True)
    assert "does not match the spec: 0 missing, 0 unexpected, 1 mis-shaped tensors (classifier.bias" in one_line(
        refused.value
    )
    code, out, err = run_cli(
        "build", str(TINY), "--out", str(tmp_path / "b"), "--weights", str(folder / "model.safetensors")
    )
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("dtype", "value", "needle"),
    [
        (torch.int8, 1, "is int8; weights are float16, bfloat16, float32, float64, int64 only"),
        (torch.complex64, complex(float("nan"), 0), "holds NaN or Inf"),
        (torch.complex64, 1j, "is complex64"),
    ],
)
def test_int8_and_complex_tensors_are_refused_never_cast(dtype, value, needle, tmp_path):
    """Regression: int8 checkpoint tensors were cast to float, complex ones passed the finite check."""
    folder, _ = build_folder(SMALL, tmp_path / "built", seed=1)
    state, metadata = read_weights(folder / "model.safetensors")
    state["classifier.bias"] = torch.full(state["classifier.bias"].shape, value, dtype=dtype)
    metadata.pop(TENSORS_SHA256)
    save_unchecked(state, folder / "model.safetensors", metadata)
    with pytest.raises(WeightsError) as refused:
        timm.create_model(f"local-dir:{folder}", pretrained=True, allow_untrained=True)
    assert f"tensor 'classifier.bias' {needle}" in one_line(refused.value)


def test_in_chans_zero_is_refused():
    """Regression: in_chans=0 read as "the default" and built a 3-channel model."""
    for value in (0, 17):
        with pytest.raises(ZooError, match=f"in_chans={value}: a model reads 1 to 16 input channels"):
            timm.create_model("rspnet_small", in_chans=value)


# -- convert ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("poison", "needle"),
    [
        (lambda t: t.fill_(float("nan")), "holds NaN or Inf"),
        (lambda t: t.to(torch.int8), "is int8"),
        (lambda t: t.long(), "integer where ours are floating point or back"),
    ],
)
def test_convert_refuses_nan_and_foreign_dtypes_and_writes_nothing(poison, needle, run_cli, tmp_path):
    """Regression: convert of a checkpoint holding NaN wrote a folder every later load refuses."""
    state = random_state(reference_layout("nas_segm_arch0"))
    key = "decoder.conv_clf.weight"
    state[key] = poison(state[key].clone())
    torch.save(state, tmp_path / "ckpt.pth")
    code, out, err = run_cli(
        "convert", "nas-segm", str(tmp_path / "ckpt.pth"), "--spec", "nas_segm_arch0", "--out", str(tmp_path / "out")
    )
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert needle in err and "decoder.conv_clf.weight" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# -- train and resume ---------------------------------------------------------------------------------------


def tiny_model():
    torch.manual_seed(0)
    g = load_spec(TINY)
    return create_genotype_net(g.name, g, num_classes=9)


def tiny_set():
    from rspnet_zoo.data import build_dataset

    return build_dataset("synthetic", "train", crop=(32, 32), train=True, length=4)


def test_training_that_diverges_stops_and_saves_nothing(tmp_path):
    """Regression (`train --lr inf`): NaN weights reached a trained tag. An infinite or merely huge learning rate
    now ends the run with one line before any checkpoint is written."""
    for lr in (float("inf"), 1e30):
        checkpoint = tmp_path / f"{lr}.pt"
        with pytest.raises(ZooError, match="training diverged") as stopped:
            train(tiny_model(), tiny_set(), epochs=1, batch_size=2, lr=lr, checkpoint=checkpoint)
        one_line(stopped.value)
        assert not checkpoint.exists()


def test_resuming_a_nan_checkpoint_is_refused_and_the_tag_kept(tmp_path, run_cli, zoo_home):
    """Regression: --resume from a checkpoint whose weights are NaN replaced a good tag."""
    run, root = tmp_path / "run", tmp_path / "camvid"
    for split, count in (("train", 2), ("val", 1)):  # the smallest data set a train writes a tag from
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for k in range(count):
            Image.fromarray(np.full((16, 24, 3), 40 * k, dtype=np.uint8)).save(root / split / f"f{k}.png")
            Image.fromarray(np.full((16, 24), k, dtype=np.uint8), mode="L").save(root / f"{split}annot" / f"f{k}.png")
    common = ("train", str(TINY), "--data", "camvid", "--root", str(root), "--crop", "16x24", "--batch-size", "2")
    common += ("--tag", "t")
    code, _, err = run_cli(*common, "--epochs", "1", "--out", str(run))
    assert code == 0, err
    tag = zoo_home / "tiny_net.t"
    before = {p.name: p.read_bytes() for p in tag.iterdir()}
    state = load_checkpoint(run / "checkpoint.pt")
    key = sorted(state["model"])[0]
    state["model"][key] = state["model"][key].clone().fill_(float("nan"))
    torch.save(state, run / "checkpoint.pt")
    code, out, err = run_cli(*common, "--epochs", "2", "--out", str(run), "--resume")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"checkpoint.pt: tensor '{key}' holds NaN or Inf" in err
    assert {p.name: p.read_bytes() for p in tag.iterdir()} == before

    state["model"][key].fill_(0.0)
    state["commands"] = ["rspnet-zoo train ...", 7]  # Regression: a command that is not a string (a traceback)
    torch.save(state, run / "checkpoint.pt")
    code, out, err = run_cli(*common, "--epochs", "2", "--out", str(run), "--resume")
    assert code == 2 and err.count("\n") == 1, err
    assert "not a training checkpoint of this run ('commands/1' is an int: input should be a valid string)" in err
    assert {p.name: p.read_bytes() for p in tag.iterdir()} == before


def test_stem_weights_go_through_the_reader(tmp_path):
    from searchers.template.evaluate import load_stem_weights

    expected = {"nodes.0.layer.0.weight": torch.zeros(2, 3, 3, 3)}
    save_unchecked({"nodes.0.layer.0.weight": torch.full((2, 3, 3, 3), float("nan"))}, tmp_path / "nan.safetensors")
    with pytest.raises(WeightsError, match=r"tensor 'nodes\.0\.layer\.0\.weight' holds NaN"):
        load_stem_weights(tmp_path / "nan.safetensors", expected)
    save_unchecked({"nodes.0.layer.0.weight": torch.ones(2, 3, 3, 3, dtype=torch.int64)}, tmp_path / "int.safetensors")
    with pytest.raises(ZooError, match="is torch.int64, not torch.float32"):
        load_stem_weights(tmp_path / "int.safetensors", expected)


def test_configs_in_a_json_checkpoint_history_are_typed(tmp_path):
    """A history row that is not an object is named, as the other fields are."""
    checkpoint = tmp_path / "c.pt"
    train(tiny_model(), tiny_set(), iterations=1, batch_size=4, checkpoint=checkpoint)
    state = load_checkpoint(checkpoint)
    state["history"] = [json.dumps(state["history"][0])]
    torch.save(state, checkpoint)
    with pytest.raises(ZooError, match=r"'history/0' is a str: input should be a valid dictionary"):
        train(tiny_model(), tiny_set(), iterations=2, batch_size=4, checkpoint=checkpoint, resume=True)
