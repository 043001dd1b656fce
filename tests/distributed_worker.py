"""Run under torchrun by tests/test_distributed.py (and called in-process for the one-process side): the DARTS
bilevel step, first and second order, and the training loop on models without BatchNorm, each rank given
its share of the same global batch. Without BatchNorm nothing is per rank, so N processes must give the
one-process result to float rounding. ``python tests/distributed_worker.py OUT`` writes OUT/rank<r>.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rspnet_zoo.data import build_dataset
from rspnet_zoo.training import distributed
from rspnet_zoo.training.loop import train
from searchers.rspnet.bilevel import Bilevel
from searchers.rspnet.budgets import Schedule

CLASSES = 3
GLOBAL_BATCH = 4


class TinySupernet(nn.Module):
    """Three candidate ops mixed by softmax(alphas): the search's shape of problem, no BatchNorm."""

    def __init__(self):
        super().__init__()
        self.ops = nn.ModuleList([nn.Conv2d(3, CLASSES, k, padding=k // 2) for k in (1, 3, 5)])
        self.alphas = nn.Parameter(1e-3 * torch.randn(len(self.ops)))

    def forward(self, x):
        w = F.softmax(self.alphas, 0)
        return sum(wi * op(x) for wi, op in zip(w, self.ops))

    def arch_parameters(self):
        return [self.alphas]

    def weight_parameters(self):
        return list(self.ops.parameters())


def bilevel_steps(order: int, steps: int = 3) -> dict:
    """``steps`` architecture + weight steps on this rank's share of fixed global batches."""
    torch.manual_seed(0)
    model = TinySupernet()
    bilevel = Bilevel(model, Schedule(epochs=2, order=order, lr=0.1, arch_lr=0.05, grad_clip=1e9))
    data = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, x_val = (torch.randn(GLOBAL_BATCH, 3, 8, 8, generator=data) for _ in range(2))
        y, y_val = (torch.randint(0, CLASSES, (GLOBAL_BATCH, 8, 8), generator=data) for _ in range(2))
        share = [t.chunk(distributed.world_size())[distributed.rank()] for t in (x, y, x_val, y_val)]
        bilevel.arch_step(*share)
        bilevel.weight_step(share[0], share[1])
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def training(iterations: int = 3) -> dict:
    """The library's training loop (DDP under torchrun) on 8 synthetic images, no label ignored."""
    dataset = build_dataset("synthetic", "train", size=(16, 16), length=8)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, dataset.num_classes, 1))
    per_process = GLOBAL_BATCH // distributed.world_size()
    train(model, dataset, iterations=iterations, batch_size=per_process, lr=0.1, device=torch.device("cpu"))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def results() -> dict:
    return dict(first_order=bilevel_steps(1), second_order=bilevel_steps(2), training=training())


if __name__ == "__main__":
    with distributed.process_group():
        out = results()
        torch.save(out, Path(sys.argv[1]) / f"rank{distributed.rank()}.pt")
