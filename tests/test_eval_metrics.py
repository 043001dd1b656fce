"""Evaluation figures equal hand-computed ones: ignore 255, a class only predicted, a class absent."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rspnet_zoo.training.loop import evaluate
from rspnet_zoo.training.metrics import SegmentationMetrics

# Two batches over 4 classes (rows: truth, columns: prediction, 255 ignored):
#   truth 0: predicted 0 three times, 2 once      truth 1: predicted 0 once, 1 three times
#   class 2 is predicted once but never true; class 3 appears nowhere; a 255 pixel predicted 2 is ignored.
PREDICTIONS = [torch.tensor([[0, 0, 1, 3], [1, 1, 0, 2]]), torch.tensor([[2, 0]])]
TARGETS = [torch.tensor([[0, 1, 1, 255], [1, 1, 0, 0]]), torch.tensor([[255, 0]])]
CLASSES = ["a", "b", "c", "d"]
EXPECTED = dict(
    confusion=[[3, 0, 1, 0], [1, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
    per_class_iou={"a": 3 / 5, "b": 3 / 4, "c": 0.0, "d": None},  # IoU = tp / (truth + predicted - tp)
    miou=(3 / 5 + 3 / 4 + 0.0) / 3,  # d has no pixel at all: left out; c was predicted: counts as 0
    mean_acc=(3 / 4 + 3 / 4) / 2,  # over the classes present in the ground truth
    fw_iou=4 / 8 * 3 / 5 + 4 / 8 * 3 / 4,  # weighted by ground-truth frequency
    pixel_acc=6 / 8,
    pixels=8,
)


def check(result: dict) -> None:
    assert result["confusion"] == EXPECTED["confusion"]
    assert result["pixels"] == EXPECTED["pixels"]
    for key in ("miou", "mean_acc", "fw_iou", "pixel_acc"):
        assert result[key] == pytest.approx(EXPECTED[key], abs=1e-6), key
    assert result["per_class_iou"].keys() == EXPECTED["per_class_iou"].keys()
    for name, iou in EXPECTED["per_class_iou"].items():
        assert (
            (result["per_class_iou"][name] is None)
            if iou is None
            else result["per_class_iou"][name] == pytest.approx(iou)
        )


def test_metrics_accumulate_one_confusion_matrix_across_batches():
    metrics = SegmentationMetrics(4, CLASSES)
    for p, t in zip(PREDICTIONS, TARGETS):
        metrics.update(p[None], t[None])
    check(metrics.compute())


def test_metrics_take_logits_too():
    metrics = SegmentationMetrics(4, CLASSES)
    for p, t in zip(PREDICTIONS, TARGETS):
        metrics.update(F.one_hot(p, 4).permute(2, 0, 1)[None].float(), t[None])
    check(metrics.compute())


class Oracle(nn.Module):
    """Predicts whatever class the image's first channel holds (so a test can say what it predicts)."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return F.one_hot(x[:, 0].long(), 4).permute(0, 3, 1, 2).float()


class Pairs(torch.utils.data.Dataset):
    num_classes = 4
    class_names = CLASSES

    def __len__(self):
        return len(PREDICTIONS)

    def __getitem__(self, i):
        return PREDICTIONS[i].float().expand(3, *PREDICTIONS[i].shape), TARGETS[i]


def test_evaluate_runs_a_whole_split_even_with_images_of_different_sizes():
    result = evaluate(Oracle(), Pairs(), batch_size=2, device=torch.device("cpu"))
    check(result)
    assert result["images"] == 2
