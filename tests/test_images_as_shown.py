"""Images as people see them (issue 30, item 6): the EXIF orientation applied, every colour mode brought to
sRGB through a correct path (or refused), and prediction masks that hold every class id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from rspnet_zoo.data.files import DataError, ImageMaskPairs, identity_lut, read_image, read_mask
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.predict.infer import predict_files
from rspnet_zoo.spec.io import load_spec

TINY = Path(__file__).parent / "data" / "tiny_net.json"
# What a viewer shows for each EXIF orientation of the stored pixels, written out from the EXIF spec.
SHOWN = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: np.rot90(a, -1),  # rotated 90 clockwise
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),  # transversed
    8: lambda a: np.rot90(a, 1),  # rotated 90 counter-clockwise
}
WHITE = np.array([255, 255, 255], dtype=np.uint8)


SRGB, LAB = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")


def lab_bytes(rgb: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """An sRGB picture as Pillow holds a decoded CIELab TIFF (L, a + 128, b + 128: littlecms gives a and b as
    signed bytes, Pillow's TIFF codec stores them offset by 128), and what those Lab values are in sRGB."""
    lab = ImageCms.applyTransform(Image.fromarray(rgb), ImageCms.buildTransform(SRGB, LAB, "RGB", "LAB"))
    shown = np.asarray(ImageCms.applyTransform(lab, ImageCms.buildTransform(LAB, SRGB, "LAB", "RGB")))
    raw = np.asarray(lab).copy()
    raw[..., 1:] ^= 0x80
    return Image.frombytes("LAB", lab.size, raw.tobytes()), shown


def stored(mode: str, rgb: np.ndarray, alpha: np.ndarray) -> tuple[Image.Image, str, np.ndarray, float]:
    """(image in ``mode``, container, the RGB a viewer shows, tolerance in 8-bit steps) for the picture ``rgb``."""
    grey = rgb[..., 0]
    if mode == "RGB":
        return Image.fromarray(rgb), "PNG", rgb, 0
    if mode == "L":
        return Image.fromarray(grey, "L"), "PNG", np.repeat(grey[..., None], 3, 2), 0
    if mode == "1":
        bits = grey >= 128
        return Image.fromarray(bits), "PNG", np.repeat(np.where(bits, 255, 0)[..., None], 3, 2).astype(np.uint8), 0
    if mode == "I;16":
        wide = grey.astype(np.uint16) * 257
        return Image.fromarray(wide), "PNG", np.repeat(grey[..., None], 3, 2), 0
    if mode == "RGBA":  # transparent pixels over white
        a = alpha[..., None] / 255.0
        shown = (rgb * a + 255 * (1 - a)).round().astype(np.uint8)
        return Image.fromarray(np.dstack([rgb, alpha])), "PNG", shown, 1
    if mode == "LA":
        a = alpha[..., None] / 255.0
        shown = (np.repeat(grey[..., None], 3, 2) * a + 255 * (1 - a)).round().astype(np.uint8)
        return Image.fromarray(np.dstack([grey, alpha]), "LA"), "PNG", shown, 1
    if mode == "P":  # a palette of the picture's first colours; index 0 transparent
        palette = np.unique(rgb.reshape(-1, 3), axis=0)[:255]
        index = np.abs(rgb[:, :, None, :].astype(int) - palette[None, None]).sum(-1).argmin(-1).astype(np.uint8)
        image = Image.fromarray(index, "P")
        image.putpalette(palette.flatten().tolist())
        image.info["transparency"] = 0
        shown = np.where((index == 0)[..., None], WHITE, palette[index])
        return image, "PNG", shown, 0
    if mode == "CMYK":  # no profile: as a viewer shows CMYK (255 - R, 255 - G, 255 - B, 0)
        return Image.fromarray(rgb).convert("CMYK"), "TIFF", rgb, 0
    if mode == "YCbCr":
        return Image.fromarray(rgb).convert("YCbCr"), "TIFF", rgb, 3
    if mode == "LAB":
        image, shown = lab_bytes(rgb)  # 8-bit Lab is coarse in dark colours: the Lab values' own sRGB
        return image, "TIFF", shown, 0
    raise AssertionError(mode)


MODES = ["RGB", "L", "1", "I;16", "RGBA", "LA", "P", "CMYK", "YCbCr", "LAB"]


@st.composite
def pictures(draw):
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    colours = st.lists(st.integers(0, 255), min_size=h * w * 3, max_size=h * w * 3)
    rgb = np.array(draw(colours), dtype=np.uint8).reshape(h, w, 3)
    alpha = np.array(draw(st.lists(st.sampled_from([0, 77, 255]), min_size=h * w, max_size=h * w)), dtype=np.uint8)
    return draw(st.sampled_from(MODES)), rgb, alpha.reshape(h, w), draw(st.integers(1, 8))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picture=pictures())
def test_every_mode_and_orientation_reads_as_a_viewer_shows_it(picture, tmp_path):
    mode, rgb, alpha, orientation = picture
    image, container, shown, tolerance = stored(mode, rgb, alpha)
    exif = Image.Exif()
    exif[0x0112] = orientation
    file = tmp_path / f"picture.{container.lower()}"
    image.save(file, format=container, exif=exif)
    got = (read_image(file).permute(1, 2, 0).numpy() * 255).round()
    expected = SHOWN[orientation](shown).astype(np.float64)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= tolerance, (mode, orientation)


def test_a_lab_tiff_keeps_its_colours(tmp_path):
    """Regression: a Lab TIFF was read as RGB, white became cyan."""
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [128, 128, 128], [200, 30, 60]]], dtype=np.uint8)
    lab_bytes(rgb)[0].save(tmp_path / "lab.tif")
    got = (read_image(tmp_path / "lab.tif").permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(got - rgb).max() <= 4, got


def test_a_phone_photos_mask_is_oriented_as_it_is_shown(tmp_path):
    """Regression: EXIF orientation was ignored, so a phone photo's mask came out transposed."""
    stored_pixels = np.zeros((8, 16, 3), dtype=np.uint8)  # landscape as stored, portrait as shown
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored_pixels).save(tmp_path / "photo.jpg", exif=exif)
    [result] = predict_files(tiny_net(3), [tmp_path / "photo.jpg"], tmp_path)
    assert Image.open(result["mask"]).size == (8, 16)  # width, height as shown


def test_a_mask_and_its_image_pair_as_shown(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(tmp_path / "image.png", exif=exif)
    labels = np.arange(24, dtype=np.uint8).reshape(4, 6) % 3
    Image.fromarray(labels, "L").save(tmp_path / "mask.png", exif=exif)
    pairs = ImageMaskPairs([(tmp_path / "image.png", tmp_path / "mask.png")], ["a", "b", "c"], identity_lut(3))
    image, mask = pairs[0]
    assert image.shape == (3, 6, 4) and torch.equal(mask, torch.from_numpy(np.rot90(labels, 1).astype(np.int64)))
    Image.fromarray(np.rot90(labels, 1).copy(), "L").save(tmp_path / "upright.png")  # the same mask, stored upright
    assert torch.equal(read_mask(tmp_path / "upright.png", identity_lut(3), 3), mask)


def test_a_profile_that_cannot_be_applied_is_refused(tmp_path):
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(tmp_path / "bad.png", icc_profile=b"not a profile")
    with pytest.raises(DataError, match=r"bad\.png: its embedded colour profile cannot bring it to sRGB") as refused:
        read_image(tmp_path / "bad.png")
    assert "\n" not in str(refused.value)


def test_an_embedded_srgb_profile_reads_as_the_pixels(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgb).save(tmp_path / "srgb.png", icc_profile=profile)
    got = (read_image(tmp_path / "srgb.png").permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(got - rgb).max() <= 1


def tiny_net(classes: int) -> GenotypeNet:
    return GenotypeNet(load_spec(TINY), num_classes=classes).eval()


def test_masks_hold_class_ids_above_65535(tmp_path):
    """Regression: class ids above 65535 wrapped in the 16-bit mask (the JSON said 94676, the mask held 60455)."""
    model = tiny_net(100_000)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[94_676] = 1.0
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "scene.png")
    [result] = predict_files(model, [tmp_path / "scene.png"], tmp_path / "out")
    assert result["mask"].endswith("scene_mask.tif") and set(result["classes"]) == {"94676"}
    assert np.unique(np.asarray(Image.open(result["mask"]))).tolist() == [94_676]
    palette = json.loads((tmp_path / "out" / "palette.json").read_text())
    assert palette["mask"].startswith("32-bit integer TIFF")
