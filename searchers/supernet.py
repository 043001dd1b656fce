"""The stage-1 supernet: mixed-op cells on the proxy chain, with PC-DARTS partial channels.

Every edge of the dense search cell is a MixedOp: the softmax(alpha)-weighted sum of the ops of
``rspnet_zoo.ops.OPS`` named by the primitives. With partial channels (K > 1) only the first C/K
channels go through the ops and the rest bypass them; the two are concatenated and channel-shuffled
with K groups. Edge normalisation (beta) weighs each edge against the other edges of its node.
The outer structure (stem, preprocessing of the cell inputs, fusion head) is compiled from the proxy
chain spec by the zoo's own building blocks.
"""
from __future__ import annotations

from typing import Iterator, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rspnet_zoo.heads import HEADS
from rspnet_zoo.model import InputFusion, LayerNode
from rspnet_zoo.ops import DARTS_PRIMITIVES, OPS
from rspnet_zoo.plan import lower
from rspnet_zoo.spec import Genotype

from .budgets import CellStage
from .structures import dense_cell, proxy_chain

POOLS = ("max_pool_3x3", "avg_pool_3x3")


def search_op(name: str, channels: int) -> nn.Module:
    """An op of the ops table as the search builds it: BN without affine parameters, so that the
    architecture weights and not a BN scale decide an op's share, and pools followed by such a BN
    (as DARTS' search network does)."""
    op = OPS[name](channels, 1, 1)
    for module in op.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight, module.bias, module.affine = None, None, False
    if name in POOLS:
        op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
    return op


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class MixedOp(nn.Module):
    """The weighted sum of every primitive on one edge; 'none' adds zeros, so it is never run."""

    def __init__(self, channels: int, primitives: Sequence[str], partial: int):
        super().__init__()
        self.partial = partial
        self.width = channels // partial
        self.index: List[int] = [i for i, p in enumerate(primitives) if p != "none"]
        self.ops = nn.ModuleList([search_op(primitives[i], self.width) for i in self.index])

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        part = x[:, : self.width].contiguous() if self.partial > 1 else x
        out = sum(weights[i] * op(part) for i, op in zip(self.index, self.ops))
        if self.partial == 1:
            return out
        return channel_shuffle(torch.cat([out, x[:, self.width :]], dim=1), self.partial)


class SearchCell(nn.Module):
    """The dense cell: step i sums the beta-weighted mixed ops on the edges from every earlier state."""

    def __init__(self, steps: int, channels: int, primitives: Sequence[str], partial: int):
        super().__init__()
        self.steps = steps
        self.edges = nn.ModuleList(
            [MixedOp(channels, primitives, partial) for i in range(steps) for _ in range(2 + i)]
        )

    def forward(self, inputs: List[torch.Tensor], alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        states = list(inputs)
        offset = 0
        for _ in range(self.steps):
            n = len(states)
            states.append(sum(betas[offset + j] * self.edges[offset + j](h, alphas[offset + j]) for j, h in enumerate(states)))
            offset += n
        return torch.cat(states[2:], dim=1)


def edge_groups(steps: int) -> Iterator[slice]:
    """The slices of the edge list that belong to each step (2, 3, 4, ... edges)."""
    offset = 0
    for i in range(steps):
        yield slice(offset, offset + 2 + i)
        offset += 2 + i


class CellSupernet(nn.Module):
    """Proxy chain of search cells; ``alphas`` (edges x primitives) and ``betas`` (edges) are the
    architecture, every other parameter a weight."""

    def __init__(self, cfg: CellStage, num_classes: int, primitives: Sequence[str] = DARTS_PRIMITIVES, in_chans: int = 3):
        super().__init__()
        self.primitives = tuple(primitives)
        self.steps = cfg.steps
        self.genotype: Genotype = proxy_chain(
            dense_cell(cfg.steps), cfg.layers, cfg.levels, cfg.channels, cfg.stem_reduction,
            cfg.head_channels, num_classes,
        )
        plan = lower(self.genotype, in_chans)
        self.layers = nn.ModuleList()
        self.inputs = nn.ModuleList()
        self.is_cell: List[bool] = []
        for node in plan.nodes:
            self.is_cell.append(node.cell is not None)
            if node.cell is None:
                self.layers.append(LayerNode(node))
            else:
                self.inputs.append(nn.ModuleList([InputFusion(s, node.channels, node.input_reduction) for s in node.slots]))
                self.layers.append(SearchCell(cfg.steps, node.channels, self.primitives, cfg.partial))
        self.decoder = HEADS["fusion"](plan.head_inputs, self.genotype.head)
        self.classifier = nn.Conv2d(self.decoder.num_features, num_classes, 1)
        num_edges = sum(2 + i for i in range(cfg.steps))
        self.alphas = nn.Parameter(1e-3 * torch.randn(num_edges, len(self.primitives)))
        self.betas = nn.Parameter(1e-3 * torch.randn(num_edges))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas, self.betas]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name not in ("alphas", "betas")]

    def edge_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """softmax(alpha) per edge, and beta normalised by a softmax over each node's edges."""
        betas = torch.cat([F.softmax(self.betas[g], dim=0) for g in edge_groups(self.steps)])
        return F.softmax(self.alphas, dim=-1), betas

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alphas, betas = self.edge_weights()
        size = [x.shape[-2], x.shape[-1]]
        states = [x]
        cells = iter(self.inputs)
        for layer, is_cell in zip(self.layers, self.is_cell):
            if is_cell:
                xs = [fusion(states, size) for fusion in next(cells)]
                states.append(layer(xs, alphas, betas))
            else:
                states.append(layer(states, size))
        logits = self.classifier(self.decoder(states))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    @torch.no_grad()
    def decode_weights(self) -> torch.Tensor:
        """What the decoder ranks: softmax(alpha) times the normalised beta of the edge (PC-DARTS)."""
        alphas, betas = self.edge_weights()
        return alphas * betas[:, None]
