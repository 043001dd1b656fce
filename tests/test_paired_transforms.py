"""The paired image/mask augmentation (torchvision ``transforms.v2`` on ``Image``/``Mask``): whatever the image,
crop, scale and flip, the mask keeps its class values (nearest only, the ignore label in padding), the output
has the crop's shape, and image and mask go through one and the same geometry.

The alignment checks encode the mask in the image (channel 0 = (class + 1) / 256, 0 in padding), so a mask
read back from the transformed image must equal the transformed mask.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rspnet_zoo.data import build_dataset
from rspnet_zoo.data.transforms import IGNORE_INDEX, TrainTransform
from rspnet_zoo.spec.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

MEAN = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)

sides = st.integers(2, 40)
crops = st.tuples(st.integers(2, 48), st.integers(2, 48))
scales = st.tuples(st.floats(0.5, 2.0), st.floats(0.5, 2.0)).map(sorted).map(tuple)
class_sets = st.sets(st.integers(0, 254), min_size=1, max_size=5).map(sorted)


def coded_image(mask: torch.Tensor) -> torch.Tensor:
    """A 3xHxW image in [0, 1] whose first channel says each pixel's class, the others noise."""
    image = torch.rand(3, *mask.shape)
    image[0] = (mask.float() + 1) / 256
    return image


def decoded_mask(image: torch.Tensor) -> torch.Tensor:
    """The mask a transformed coded image says: its classes, and the ignore label where it was padded."""
    code = torch.round((image * STD + MEAN)[0] * 256).long() - 1
    return torch.where(code < 0, IGNORE_INDEX, code)


def random_mask(shape: tuple[int, int], classes: list[int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.tensor(classes)[torch.randint(0, len(classes), shape, generator=g)]


@settings(max_examples=60, deadline=None)
@given(sides, sides, crops, scales, st.floats(0, 1), class_sets, st.integers(0, 2**31 - 1))
def test_masks_keep_their_classes_and_the_crop_shape(h, w, crop, scale, flip, classes, seed):
    """Any resize of the mask is nearest-neighbour (a sparse class set would show an interpolated value)."""
    torch.manual_seed(seed)
    mask = random_mask((h, w), classes, seed)
    image, out = TrainTransform(crop, scale=scale, flip=flip)(torch.rand(3, h, w), mask)
    assert image.shape == (3, *crop) and out.shape == crop
    assert image.dtype == torch.float32 and out.dtype == torch.int64
    assert set(out.unique().tolist()) <= set(classes) | {IGNORE_INDEX}


@settings(max_examples=60, deadline=None)
@given(sides, sides, crops, st.sampled_from([0.0, 1.0]), class_sets, st.integers(0, 2**31 - 1))
def test_crops_pads_and_flips_move_image_and_mask_alike(h, w, crop, flip, classes, seed):
    torch.manual_seed(seed)
    mask = random_mask((h, w), classes, seed)
    image, out = TrainTransform(crop, scale=(1.0, 1.0), flip=flip)(coded_image(mask), mask)
    assert torch.equal(decoded_mask(image), out)
    # a crop no larger than the image is all image; a larger one holds the whole image, the rest ignored
    labelled = out != IGNORE_INDEX
    assert (int(labelled.sum(0).max()), int(labelled.sum(1).max())) == (min(h, crop[0]), min(w, crop[1]))


@settings(max_examples=40, deadline=None)
@given(
    st.tuples(st.integers(1, 5), st.integers(1, 5)),
    st.integers(10, 16),
    st.tuples(st.integers(8, 48), st.integers(8, 48)),
    scales,
    class_sets,
    st.integers(0, 2**31 - 1),
)
def test_scaled_image_and_mask_stay_aligned(grid, block, crop, scale, classes, seed):
    """Bilinear image, nearest mask: wherever the mask says one class for 5x5 pixels around, the image says
    the same class (the two resamplings differ by up to a pixel at class borders)."""
    torch.manual_seed(seed)
    mask = random_mask(grid, classes, seed).repeat_interleave(block, 0).repeat_interleave(block, 1)
    image, out = TrainTransform(crop, scale=scale, flip=0.5)(coded_image(mask), mask)
    padded = torch.nn.functional.pad(out[None, None].float(), (2, 2, 2, 2), value=-1)  # unknown beyond the crop
    around = padded.unfold(2, 5, 1).unfold(3, 5, 1)[0, 0].flatten(-2)
    inside = (around == out[..., None]).all(-1) & (out != IGNORE_INDEX)
    assert torch.equal(decoded_mask(image)[inside], out[inside])


def test_a_crop_larger_than_the_image_holds_all_of_it_padded_with_ignore_and_flipped_with_the_mask():
    torch.manual_seed(0)
    mask = torch.arange(40).repeat(30, 1)  # mask value = column
    image, out = TrainTransform(crop=(64, 48), scale=(1.0, 1.0), flip=1.0)(coded_image(mask), mask)
    assert image.shape == (3, 64, 48) and out.shape == (64, 48)
    assert int((out != IGNORE_INDEX).sum()) == 30 * 40  # padding is ignored, not background
    row = out[(out != IGNORE_INDEX).any(1)][0]
    row = row[row != IGNORE_INDEX]
    assert row.tolist() == list(range(39, -1, -1))  # flipped: columns now run right to left
    assert torch.equal(decoded_mask(image), out)


def test_without_a_crop_each_image_keeps_its_size():
    mask = torch.zeros(30, 50, dtype=torch.long)
    image, out = TrainTransform()(torch.rand(3, 30, 50), mask)
    assert image.shape == (3, 30, 50) and out.shape == (30, 50)


def test_the_draw_follows_torch_seed():
    """The training loader seeds torch per (seed, epoch, image); the same seed is the same augmentation."""
    ds = build_dataset("synthetic", "train", crop=(32, 40), train=True, length=2)

    def item(seed: int):
        torch.manual_seed(seed)
        return ds[1]

    (a, ma), (b, mb), (c, _) = item(7), item(7), item(8)
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert not torch.equal(a, c)
