"""The embedded synthetic benchmark: deterministic, any size, fixed splits, every class, many scales."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rspnet_zoo.data import DataError, build_dataset
from rspnet_zoo.data.synthetic import CLASS_NAMES, SyntheticSegmentation


def test_items_are_normalised_images_and_label_maps():
    ds = build_dataset("synthetic", "val")
    image, mask = ds[0]
    assert image.shape == (3, 128, 128) and image.dtype == torch.float32
    assert mask.shape == (128, 128) and mask.dtype == torch.int64
    assert ds.num_classes == len(ds.class_names) == 9 and ds.class_names[0] == "background"
    assert len(ds) == 100
    assert image.min() < -1.0 and image.max() > 1.0  # mean/std normalised, not [0, 1]


def test_deterministic_by_seed_split_and_index():
    a = SyntheticSegmentation("train", size=(96, 160), seed=3)
    b = SyntheticSegmentation("train", size=(96, 160), seed=3)
    for i in (0, 7):
        ia, ma = a.raw(i)
        ib, mb = b.raw(i)
        assert torch.equal(ia, ib) and torch.equal(ma, mb)
    assert not torch.equal(a.raw(0)[1], a.raw(1)[1])
    assert not torch.equal(a.raw(0)[1], SyntheticSegmentation("val", size=(96, 160), seed=3).raw(0)[1])
    assert not torch.equal(a.raw(0)[1], SyntheticSegmentation("train", size=(96, 160), seed=4).raw(0)[1])


@pytest.mark.parametrize("size", [(37, 53), (128, 128), (200, 96)])
def test_any_image_size(size):
    image, mask = SyntheticSegmentation("val", size=size).raw(0)
    assert image.shape == (3, *size) and mask.shape == size
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0


def test_every_class_appears_with_objects_at_several_scales():
    ds = SyntheticSegmentation("val", size=(256, 256))
    seen, spreads = set(), []
    for i in range(24):
        m = ds.raw(i)[1].numpy()
        seen |= set(np.unique(m).tolist())
        areas = np.bincount(m.ravel(), minlength=len(CLASS_NAMES))[1:]
        areas = areas[areas > 0]
        spreads.append(areas.max() / areas.min())
        assert (m == 0).mean() > 0.2  # background is a class of its own, always present
    assert seen == set(range(len(CLASS_NAMES)))
    assert np.median(spreads) > 10  # in a typical scene the largest object class covers 10x the smallest


def test_objects_occlude_each_other():
    """Objects are drawn over each other: two different object classes share a border in most scenes."""
    ds = SyntheticSegmentation("val", size=(256, 256))
    touching = 0
    for i in range(16):
        m = ds.raw(i)[1]
        a, b = m[:, 1:], m[:, :-1]
        touching += int(((a != b) & (a > 0) & (b > 0)).sum() > 0)
    assert touching >= 8


def test_unknown_split_is_refused():
    with pytest.raises(DataError, match="splits train, val, test"):
        build_dataset("synthetic", "holdout")


def test_training_set_draws_random_crops_of_the_requested_size():
    ds = build_dataset("synthetic", "train", crop=(64, 80), train=True, length=4)
    shapes = {tuple(ds[i][0].shape) for i in range(4)}
    assert shapes == {(3, 64, 80)}
