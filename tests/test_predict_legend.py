"""What predict's pictures mean: palette-indexed masks with the class palette, outlines, a legend, palette.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from rspnet_zoo.data.files import read_image
from rspnet_zoo.data.synthetic import CLASS_NAMES
from rspnet_zoo.predict.infer import KELLY, UNPAINTED, overlay, palette, predict_labels
from rspnet_zoo.predict.legend import MARGIN, ROW, SWATCH, Swatch, draw_legend, outline, save_mask


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """One synthetic scene predicted by the shipped weights, with everything the CLI wrote about it."""
    from rspnet_zoo.cli.app import main

    folder = tmp_path_factory.mktemp("predict")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RSPNET_ZOO_HOME", str(folder / "zoo-home"))  # nothing read from or written to ~/.cache
        for args in (
            ["data", "sample", str(folder / "scene.png"), "--size", "96x128"],
            [
                "predict",
                "rspnet_small.synth",
                str(folder / "scene.png"),
                "--out",
                str(folder / "pred"),
                "--alpha",
                "0.4",
            ],
        ):
            with pytest.raises(SystemExit) as e:
                main(args)
            assert e.value.code == 0
        model = timm.create_model("rspnet_small.synth", pretrained=True).eval()
    image = read_image(folder / "scene.png")
    return folder, predict_labels(model, image).numpy(), image


def test_mask_is_palette_indexed_with_the_class_ids(predicted):
    folder, labels, _ = predicted
    mask = Image.open(folder / "pred" / "scene_mask.png")
    assert mask.mode == "P"
    colours = palette(CLASS_NAMES)
    assert mask.getpalette()[: 3 * len(CLASS_NAMES)] == colours.flatten().tolist()
    assert np.array_equal(np.array(mask), labels)  # the pixel values are the model's class ids
    assert np.array_equal(np.array(mask.convert("RGB")), colours[labels])  # viewers show the class colours


def test_palette_file_names_every_class_and_the_overlay_settings(predicted):
    folder, _, _ = predicted
    doc = json.loads((folder / "pred" / "palette.json").read_text())
    colours = palette(CLASS_NAMES)
    assert [c["name"] for c in doc["classes"]] == list(CLASS_NAMES)
    assert [c["id"] for c in doc["classes"]] == list(range(len(CLASS_NAMES)))
    assert [c["rgb"] for c in doc["classes"]] == colours.tolist()
    assert all(c["hex"] == "#" + bytes(c["rgb"]).hex() for c in doc["classes"])
    assert doc["overlay"]["alpha"] == 0.4 and doc["overlay"]["unpainted"] == ["background"]


def legend_swatches(picture: np.ndarray, width: int, count: int) -> list[tuple[tuple, tuple]]:
    """(frame colour, fill colour) of each swatch drawn in the legend panel right of ``width``, top down."""
    out = []
    for i in range(count):
        top, left = MARGIN + i * ROW, width + MARGIN
        out.append((tuple(picture[top + SWATCH // 2, left]), tuple(picture[top + SWATCH // 2, left + SWATCH // 2])))
    return out


def test_overlay_blends_at_alpha_rims_classes_in_their_colour_and_carries_a_legend(predicted):
    folder, labels, image = predicted
    picture = np.array(Image.open(folder / "pred" / "scene_overlay.png"))
    h, w = labels.shape
    assert picture.shape[0] >= h and picture.shape[1] > w
    colours = palette(CLASS_NAMES)
    expected = overlay(image, torch.from_numpy(labels), colours, CLASS_NAMES, alpha=0.4)
    assert np.array_equal(picture[:h, :w], expected)
    rims = outline(labels) & (labels > 0)
    assert rims.any() and (picture[:h, :w][rims] == colours[labels[rims]]).all()  # each rim in its class colour
    painted = (labels > 0) & ~outline(labels)
    rgb = image.permute(1, 2, 0).numpy() * 255
    blend = 0.6 * rgb + 0.4 * colours[labels]
    assert np.abs(picture[:h, :w][painted] - blend[painted]).max() <= 1  # the stated alpha, to rounding
    found = sorted(np.unique(labels), key=lambda i: -(labels == i).sum())
    frames = [frame for frame, _ in legend_swatches(picture, w, len(found))]
    assert frames == [tuple(colours[i]) for i in found]  # framed in the class colour, largest class first


def test_each_class_looks_nearest_its_own_legend_swatch(predicted):
    """What a person does: match the colour a region has in the overlay to the nearest swatch of the legend."""
    folder, labels, _ = predicted
    picture = np.array(Image.open(folder / "pred" / "scene_overlay.png")).astype(float)
    h, w = labels.shape
    found = sorted(np.unique(labels), key=lambda i: -(labels == i).sum())
    fills = np.array([fill for _, fill in legend_swatches(picture.astype(np.uint8), w, len(found))], dtype=float)
    fill = ~outline(labels)
    for k, i in enumerate(found):
        looks = picture[:h, :w][(labels == i) & fill].mean(0)
        assert np.argmin(np.linalg.norm(fills - looks, axis=1)) == k, CLASS_NAMES[i]


def test_console_summary_lists_every_class_found(run_cli, predicted):
    folder, labels, _ = predicted
    code, out, err = run_cli("predict", "rspnet_small.synth", str(folder / "scene.png"), "--out", str(folder / "p2"))
    assert code == 0, err
    found = [CLASS_NAMES[i] for i in np.unique(labels)]
    assert len(found) > 4  # more than the old top four
    assert all(f"{name} " in out for name in found)
    assert "palette.json" in out and "alpha 0.5" in out


def test_legend_panel_grows_a_small_picture_to_fit_every_entry():
    entries = [Swatch(f"class{i}", (i, 0, 0), (0, i, 0), 0.1) for i in range(10)]
    picture = draw_legend(np.zeros((8, 8, 3), np.uint8), entries)
    assert picture.shape[0] >= 10 * 12 and picture.shape[1] > 8


def test_more_classes_than_a_palette_holds_are_written_as_16_bit_ids(tmp_path):
    names = [str(i) for i in range(300)]
    labels = np.arange(300, dtype=np.int64).reshape(15, 20)
    mask = Image.open(save_mask(labels, palette(names), tmp_path / "m.png"))
    assert mask.mode.startswith("I") and np.array_equal(np.array(mask), labels)


def test_the_palette_is_kellys_colours_for_the_painted_classes():
    colours = palette(["background", *(f"c{i}" for i in range(20))])
    assert colours[0].tolist() == [0, 0, 0] and len({tuple(c) for c in colours[1:]}) == 20
    assert "#" + bytes(colours[1].tolist()).hex() == KELLY[0]
    many = palette([f"c{i}" for i in range(40)])
    assert len({tuple(c) for c in many}) == 40  # hues beyond Kelly's twenty


def test_data_sample_writes_its_mask_in_the_palette_predict_uses(run_cli, tmp_path):
    code, _, err = run_cli(
        "data", "sample", str(tmp_path / "s.png"), "--size", "48x64", "--mask", str(tmp_path / "m.png")
    )
    assert code == 0, err
    mask = Image.open(tmp_path / "m.png")
    assert mask.mode == "P" and mask.getpalette()[: 3 * len(CLASS_NAMES)] == palette(CLASS_NAMES).flatten().tolist()
    assert set(np.unique(np.array(mask))) <= set(range(len(CLASS_NAMES)))


def test_unpainted_names_are_black_in_the_palette():
    colours = palette(["void", "road", "Background"])
    assert colours[0].tolist() == [0, 0, 0] and colours[2].tolist() == [0, 0, 0] and colours[1].any()
    assert {"void", "background"} <= set(UNPAINTED)  # the names the overlay leaves unpainted


@pytest.mark.parametrize("args", [["s.jpg"], ["s.png", "--mask", "m.svg"], ["s.png", "--mask", "m"]])
def test_data_sample_writes_only_under_the_names_given_or_refuses(run_cli, tmp_path, args, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("data", "sample", *args, "--size", "16x16")
    assert code == 2 and "name a .png file" in err
    assert list(tmp_path.iterdir()) == []  # nothing written, under that name or another


def test_data_sample_keeps_the_mask_name_s_case(run_cli, tmp_path):
    code, _, err = run_cli(
        "data", "sample", str(tmp_path / "s.png"), "--size", "16x16", "--mask", str(tmp_path / "m.PNG")
    )
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.PNG", "s.png"]
