"""Segmentation metrics from one confusion matrix over a whole split, accumulated by torchmetrics.

A batch updates one ``num_classes x num_classes`` matrix and every figure is read from it. Under
torch.distributed the matrices of all ranks are summed before any figure is computed (counts add
exactly, so N processes give the very figures of one), never the per-rank mIoU averaged. A class with
no pixel in the ground truth and none predicted has no IoU (``None``) and is left out of the means; a
class that is predicted but absent from the ground truth has IoU 0 and counts, as in the Cityscapes
scripts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from rspnet_zoo.data.transforms import IGNORE_INDEX
from rspnet_zoo.training import distributed


class SegmentationMetrics:
    """Feed it ``(predictions, targets)`` as class-id maps (or logits, Bx C xHxW); read ``compute()``."""

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, ignore_index: int = IGNORE_INDEX):
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.confusion = MulticlassConfusionMatrix(
            num_classes, ignore_index=ignore_index, validate_args=False, sync_on_compute=False
        )

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        if predictions.dim() == targets.dim() + 1:
            predictions = predictions.argmax(1)
        self.confusion.update(predictions.cpu(), targets.cpu())

    def compute(self) -> dict:
        """miou, mean_acc, fw_iou, pixel_acc, per_class_iou ({name: IoU or None}), confusion (rows = truth)."""
        counts = distributed.sum_(self.confusion.compute())
        confusion = counts.double()
        truth, predicted, hits = confusion.sum(1), confusion.sum(0), confusion.diagonal()
        present = (truth + predicted) > 0
        iou = torch.where(present, hits / (truth + predicted - hits).clamp_min(1), torch.zeros_like(hits))
        in_truth = truth > 0
        class_acc = hits[in_truth] / truth[in_truth]
        total = truth.sum()
        return dict(
            miou=float(iou[present].mean()) if present.any() else 0.0,
            mean_acc=float(class_acc.mean()) if in_truth.any() else 0.0,
            fw_iou=float((iou * truth).sum() / total) if total > 0 else 0.0,
            pixel_acc=float(hits.sum() / total) if total > 0 else 0.0,
            per_class_iou={
                name: (value if ok else None)
                for name, value, ok in zip(self.class_names, iou.tolist(), present.tolist())
            },
            confusion=counts.tolist(),
            pixels=int(total),
        )

    def counts(self) -> torch.Tensor:
        """This process's confusion matrix so far (rows = truth), to carry over a checkpoint."""
        return self.confusion.confmat.clone()

    def load_counts(self, counts: torch.Tensor) -> None:
        """Go on from ``counts`` (a ``counts()`` of an earlier run of the same pass over the data)."""
        self.confusion.confmat.copy_(counts)

    def reset(self) -> None:
        self.confusion.reset()
