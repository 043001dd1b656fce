"""Cityscapes, CamVid and plain-folder layouts, built as small fixtures, and their error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rspnet_zoo.data import DataError, build_dataset

# cityscapesScripts labels.py: labelId -> trainId (255 = not evaluated), written out independently.
CITYSCAPES_TRAIN_ID = {
    0: 255,
    1: 255,
    2: 255,
    3: 255,
    4: 255,
    5: 255,
    6: 255,
    7: 0,
    8: 1,
    9: 255,
    10: 255,
    11: 2,
    12: 3,
    13: 4,
    14: 255,
    15: 255,
    16: 255,
    17: 5,
    18: 255,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    29: 255,
    30: 255,
    31: 16,
    32: 17,
    33: 18,
}


def write_rgb(path: Path, h: int, w: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def write_labels(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)


@pytest.fixture
def cityscapes_root(tmp_path):
    root = tmp_path / "cityscapes"
    ids = np.array(sorted(CITYSCAPES_TRAIN_ID) + [34, 200, 255], dtype=np.uint8)  # every id, and some never used
    labels = np.tile(ids, (4, 1))
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        for k in range(2):
            stem = f"{city}_00000{k}_000019"
            write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", *labels.shape, seed=k)
            write_labels(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", labels)
            # the other gtFine products must not be mistaken for label maps
            write_labels(root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png", labels * 0 + 7)
    return root, ids


def test_cityscapes_maps_every_label_id_to_its_train_id(cityscapes_root):
    root, ids = cityscapes_root
    ds = build_dataset("cityscapes", "val", root=root)
    assert len(ds) == 2 and ds.num_classes == 19 and ds.class_names[0] == "road" and ds.class_names[-1] == "bicycle"
    image, mask = ds[0]
    assert image.shape == (3, 4, len(ids)) and mask.dtype == torch.int64
    expected = [CITYSCAPES_TRAIN_ID.get(int(i), 255) for i in ids]
    assert mask[0].tolist() == expected
    assert sorted(set(expected) - {255}) == list(range(19))


@pytest.fixture
def camvid_root(tmp_path):
    root = tmp_path / "camvid"
    labels = np.tile(np.arange(12, dtype=np.uint8), (3, 1))  # 0..10 classes, 11 = void
    for split in ("train", "val", "test"):
        for k in range(3):
            write_rgb(root / split / f"0001TP_00{k}.png", *labels.shape, seed=k)
            write_labels(root / f"{split}annot" / f"0001TP_00{k}.png", labels)
    return root


def test_camvid_segnet_layout_ignores_void(camvid_root):
    ds = build_dataset("camvid", "test", root=camvid_root)
    assert len(ds) == 3 and ds.num_classes == 11
    assert ds[1][1][0].tolist() == list(range(11)) + [255]


@pytest.fixture
def folder_root(tmp_path):
    root = tmp_path / "plain"
    (root).mkdir()
    (root / "classes.txt").write_text("sky\nwater\nland\n")
    for k in range(3):
        write_rgb(root / "images" / f"img{k}.jpg", 8, 10, seed=k)
        write_labels(root / "masks" / f"img{k}.png", np.full((8, 10), k, dtype=np.uint8))
    return root


def test_plain_folder_reads_classes_txt_and_masks_by_stem(folder_root):
    ds = build_dataset("folder", "val", root=folder_root)
    assert ds.class_names == ["sky", "water", "land"] and len(ds) == 3
    assert [int(ds[k][1][0, 0]) for k in range(3)] == [0, 1, 2]


def test_plain_folder_with_split_subfolders(folder_root):
    (folder_root / "images" / "train").mkdir()
    (folder_root / "masks" / "train").mkdir()
    (folder_root / "images" / "img0.jpg").rename(folder_root / "images" / "train" / "img0.jpg")
    (folder_root / "masks" / "img0.png").rename(folder_root / "masks" / "train" / "img0.png")
    assert len(build_dataset("folder", "train", root=folder_root)) == 1


def test_training_augmentation_on_a_file_layout(camvid_root):
    ds = build_dataset("camvid", "train", root=camvid_root, crop=(16, 16), train=True)
    image, mask = ds[0]
    assert image.shape == (3, 16, 16) and mask.shape == (16, 16)
    assert set(mask.unique().tolist()) <= set(range(11)) | {255}


# -- errors: one line naming the file, exit 2 -------------------------------------------------------


def test_missing_root(run_cli, tmp_path):
    code, out, err = run_cli("eval", "rspnet_small", "--data", "camvid", "--root", str(tmp_path / "nowhere"))
    assert code == 2 and out == ""
    assert err.strip() == f"rspnet-zoo: error: {tmp_path / 'nowhere'}: no such folder (the camvid data set root)"


def test_missing_split_folder(camvid_root):
    with pytest.raises(DataError, match=r"camvid/holdout: no such folder"):
        build_dataset("camvid", "holdout", root=camvid_root)


def test_image_without_mask(run_cli, cityscapes_root):
    root, _ = cityscapes_root
    mask = root / "gtFine" / "val" / "frankfurt" / "frankfurt_000001_000019_gtFine_labelIds.png"
    mask.unlink()
    code, out, err = run_cli("eval", "rspnet_small", "--data", "cityscapes", "--root", str(root))
    image = root / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000001_000019_leftImg8bit.png"
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.strip() == f"rspnet-zoo: error: {image}: no mask (expected {mask})"


def test_image_and_mask_of_different_sizes(run_cli, folder_root):
    write_labels(folder_root / "masks" / "img1.png", np.zeros((8, 9), dtype=np.uint8))
    code, _, err = run_cli("eval", "rspnet_small", "--data", "folder", "--root", str(folder_root))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (
        f"{folder_root / 'masks' / 'img1.png'}: mask is 9x8 but its image {folder_root / 'images' / 'img1.jpg'} is 10x8"
        in err
    )


def test_class_id_out_of_range(run_cli, camvid_root, tmp_path):
    bad = camvid_root / "valannot" / "0001TP_002.png"
    write_labels(bad, np.full((3, 12), 12, dtype=np.uint8))
    with pytest.raises(DataError, match=r"0001TP_002.png: class id 12 is out of range \(0-10, 255 = ignore\)"):
        build_dataset("camvid", "val", root=camvid_root)[2]


def test_class_id_out_of_range_in_the_cli(run_cli, folder_root, tmp_path, monkeypatch):
    """eval reads masks as it goes: the bad one stops it with one line, nothing else printed on stdout."""
    from rspnet_zoo.spec.io import load_spec
    from rspnet_zoo.zoo.folder import build_folder

    monkeypatch.setenv("RSPNET_ZOO_ALLOW_UNTRAINED", "1")  # a build's initialised weights, asked for
    tiny = Path(__file__).parent / "data" / "tiny_net.json"
    folder, _ = build_folder(load_spec(tiny), tmp_path / "built", num_classes=3)
    write_labels(folder_root / "masks" / "img2.png", np.full((8, 10), 7, dtype=np.uint8))
    code, out, err = run_cli("eval", str(folder), "--data", "folder", "--root", str(folder_root), "--json")
    assert code == 2 and out == ""
    assert (
        err.strip()
        == f"rspnet-zoo: error: {folder_root / 'masks' / 'img2.png'}: class id 7 is out of range (0-2, 255 = ignore)"
    )


def test_class_list_missing(folder_root):
    (folder_root / "classes.txt").unlink()
    with pytest.raises(DataError, match=r"classes.txt: no such file"):
        build_dataset("folder", "train", root=folder_root)


def test_unreadable_image(run_cli, folder_root):
    (folder_root / "images" / "img0.jpg").write_bytes(b"not an image")
    code, _, err = run_cli("eval", "rspnet_small", "--data", "folder", "--root", str(folder_root))
    assert code == 2 and f"{folder_root / 'images' / 'img0.jpg'}: not a readable image" in err


def test_unknown_data_set_and_missing_root_flag():
    with pytest.raises(DataError, match="unknown data set 'kitti'"):
        build_dataset("kitti", "train")
    with pytest.raises(DataError, match=r"needs a root folder \(--root DIR\)"):
        build_dataset("cityscapes", "train")
