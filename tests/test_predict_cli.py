"""predict: a colour-coded mask and an overlay per image; data sample: a scene to try it on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rspnet_zoo.data.synthetic import CLASS_NAMES
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.predict.legend import outline
from rspnet_zoo.spec.io import load_spec
from rspnet_zoo.zoo.folder import FolderWeights, write_folder
from rspnet_zoo.zoo.weights import initialised

TINY = Path(__file__).parent / "data" / "tiny_net.json"


@pytest.fixture
def tiny_folder(tmp_path, monkeypatch):
    """A built folder: its weights are initialised, which predict loads only when asked to."""
    monkeypatch.setenv("RSPNET_ZOO_ALLOW_UNTRAINED", "1")
    genotype = load_spec(TINY)
    model = GenotypeNet(genotype)
    weights = FolderWeights(model, initialised(0), class_names=CLASS_NAMES)
    folder, _ = write_folder(genotype, tmp_path / "built", weights)
    return folder


def test_data_sample_writes_a_deterministic_scene_and_its_labels(run_cli, tmp_path):
    code, out, err = run_cli(
        "data",
        "sample",
        str(tmp_path / "a.png"),
        "--size",
        "96x128",
        "--mask",
        str(tmp_path / "a_mask.png"),
        "--index",
        "3",
        "--json",
    )
    assert code == 0, err
    info = json.loads(out)
    assert info["size"] == [96, 128] and "background" in info["classes"]
    image, labels = Image.open(tmp_path / "a.png"), np.array(Image.open(tmp_path / "a_mask.png"))
    assert image.size == (128, 96) and image.mode == "RGB"
    assert labels.shape == (96, 128) and labels.max() < len(CLASS_NAMES)
    run_cli("data", "sample", str(tmp_path / "b.png"), "--size", "96x128", "--index", "3")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_predict_writes_a_mask_and_an_overlay_per_image(run_cli, tmp_path, tiny_folder):
    for name, size in (("one", "64"), ("two", "40x72")):
        run_cli("data", "sample", str(tmp_path / f"{name}.png"), "--size", size)
    out_dir = tmp_path / "pred"
    code, out, err = run_cli(
        "predict",
        str(tiny_folder),
        str(tmp_path / "one.png"),
        str(tmp_path / "two.png"),
        "--out",
        str(out_dir),
        "--json",
    )
    assert code == 0, err
    results = json.loads(out)
    assert [Path(r["overlay"]).name for r in results] == ["one_overlay.png", "two_overlay.png"]
    for r, (h, w) in zip(results, ((64, 64), (40, 72))):
        mask = Image.open(r["mask"])
        overlay = Image.open(r["overlay"])
        assert mask.mode == "P" and mask.size == (w, h)
        assert overlay.size[0] > w and overlay.size[1] >= h  # the legend panel sits on the right
        assert np.array(mask).max() < len(CLASS_NAMES)
        assert sum(r["classes"].values()) == pytest.approx(1.0, abs=1e-3)
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "one_mask.png",
        "one_overlay.png",
        "palette.json",
        "two_mask.png",
        "two_overlay.png",
    ]


def test_missing_image_is_one_line_and_nothing_is_written(run_cli, tmp_path, tiny_folder):
    run_cli("data", "sample", str(tmp_path / "ok.png"), "--size", "32")
    code, out, err = run_cli(
        "predict",
        str(tiny_folder),
        str(tmp_path / "ok.png"),
        str(tmp_path / "gone.png"),
        "--out",
        str(tmp_path / "pred"),
    )
    assert code == 2 and out == ""
    assert err.strip() == f"rspnet-zoo: error: {tmp_path / 'gone.png'}: no such image file"
    assert not (tmp_path / "pred").exists()


def test_unreadable_image_is_one_line(run_cli, tmp_path, tiny_folder):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    code, _, err = run_cli("predict", str(tiny_folder), str(tmp_path / "bad.png"), "--out", str(tmp_path / "pred"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{tmp_path / 'bad.png'}: not a readable image" in err


def test_a_model_without_weights_is_refused(run_cli, tmp_path):
    run_cli("data", "sample", str(tmp_path / "s.png"), "--size", "32")
    code, _, err = run_cli("predict", str(TINY), str(tmp_path / "s.png"), "--out", str(tmp_path / "p"))
    assert code == 2 and "a spec has no weights" in err and str(TINY) in err
    code, _, err = run_cli("predict", "no_such_model", str(tmp_path / "s.png"), "--out", str(tmp_path / "p"))
    assert code == 2 and "unknown model 'no_such_model'" in err


def test_shipped_weights_segment_a_generated_scene(run_cli, tmp_path):
    """The README's first command: the overlay shows the scene's objects, not noise."""
    code, _, err = run_cli("data", "sample", str(tmp_path / "scene.png"), "--mask", str(tmp_path / "truth.png"))
    assert code == 0, err
    code, out, err = run_cli(
        "predict", "rspnet_small.synth", str(tmp_path / "scene.png"), "--out", str(tmp_path / "pred"), "--json"
    )
    assert code == 0, err
    [result] = json.loads(out)
    predicted = np.array(Image.open(result["mask"]))  # palette-indexed: the pixel values are the class ids
    truth = np.array(Image.open(tmp_path / "truth.png"))
    objects = truth > 0
    assert (predicted == truth).mean() > 0.85
    assert (predicted[objects] == truth[objects]).mean() > 0.6
    scene = np.array(Image.open(tmp_path / "scene.png")).astype(int)
    h, w = predicted.shape
    overlay = np.array(Image.open(result["overlay"]))[:h, :w].astype(int)
    inside = (predicted == 0) & ~outline(predicted)
    assert np.abs(overlay - scene).sum(-1)[predicted > 0].mean() > 20  # objects are tinted
    assert np.abs(overlay - scene).sum(-1)[inside].max() == 0  # background is left as it is, but for the outlines
