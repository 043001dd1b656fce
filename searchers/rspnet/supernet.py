"""The stage-1 supernet: mixed-op cells on the proxy chain, with PC-DARTS partial channels.

Every edge of the dense search cell is a mixed op: the softmax(alpha)-weighted sum of the ops of
``rspnet_zoo.nn.ops.OPS`` named by the primitives. With partial channels (K > 1) only the first C/K
channels go through the ops and the rest bypass them; the two are concatenated and channel-shuffled
with K groups. Edge normalisation (beta) weighs each edge against the other edges of its node.
A step computes the mixed ops of all its edges together (``MixedStep``).
The outer structure (stem, preprocessing of the cell inputs, fusion head) is compiled from the proxy
chain spec by the zoo's own building blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.nn.ops import DARTS_PRIMITIVES, OPS, make_op
from rspnet_zoo.spec.models import Genotype
from searchers.rspnet.budgets import CellStage, SearchEncoder
from searchers.rspnet.structures import dense_cell, dense_edge_count, dense_edge_rows, proxy_chain

POOLS = ("max_pool_3x3", "avg_pool_3x3")


def search_op(name: str, channels: int, pre_act: bool = True, norm: bool = True) -> nn.Module:
    """An op of the ops table as the search builds it: BN without affine parameters, so that the
    architecture weights and not a BN scale decide an op's share, and pools followed by such a BN
    (as DARTS' search network does). ``pre_act`` / ``norm`` as in ``rspnet_zoo.nn.ops.make_op``."""
    op = make_op(name, channels, 1, 1, affine=False, pre_act=pre_act, norm=norm)
    if name in POOLS and norm:
        op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
    return op


def blockwise(op: nn.Module, blocks: int) -> nn.Module:
    """``op`` as ``blocks`` independent copies side by side along the channels: each conv that mixes
    channels becomes a grouped conv, so no block reads another (depthwise convs, BN, pools and skips
    already work per channel). Grouped weights get the same initialisation as separate ops."""
    for parent in list(op.modules()):
        for name, conv in parent.named_children():
            if isinstance(conv, nn.Conv2d) and conv.groups == 1 and blocks > 1:
                setattr(
                    parent,
                    name,
                    nn.Conv2d(
                        conv.in_channels,
                        conv.out_channels,
                        conv.kernel_size,
                        conv.stride,
                        conv.padding,
                        conv.dilation,
                        groups=blocks,
                        bias=conv.bias is not None,
                    ),
                )
    return op


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ScaledOp(nn.Module):
    """A search op whose closing BN (no affine) takes the architecture weight of each channel as its
    scale, so weighting the op costs no extra pass and saves no extra activation. The leading ReLU of
    the DARTS convs is taken off: the step applies it once for all of them."""

    def __init__(self, name: str, channels: int, blocks: int):
        super().__init__()
        self.pre_act = OPS[name].pre_act
        self.body = blockwise(search_op(name, channels, pre_act=False, norm=False), blocks)
        closes_with_norm = OPS[name].norm or name in POOLS
        self.norm = nn.BatchNorm2d(channels, affine=False) if closes_with_norm else None

    def forward(self, x: torch.Tensor, x_relu: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        y = self.body(x_relu if self.pre_act else x)
        if self.norm is None:
            return y * scale[:, None, None]
        n = self.norm
        return F.batch_norm(y, n.running_mean, n.running_var, scale, None, self.training, n.momentum, n.eps)


class MixedStep(nn.Module):
    """One step of the dense cell: the mixed ops on all of its edges at once.

    Edge j computes ``shuffle(cat(sum_p alpha_jp op_jp(h_j[:w]), h_j[w:]))`` and the step sums the edges
    weighted by beta. The shuffle is a fixed permutation, so the step is the shuffle of the summed op
    outputs next to the summed bypasses. The edges' partial inputs are stacked along the channels and
    each primitive runs once, blockwise, over the stack: the same arithmetic as one mixed op per edge,
    in 1/n of the kernel calls, which is what a search step costs at 4 to 16 channels per edge.
    """

    def __init__(self, num_edges: int, channels: int, primitives: Sequence[str], partial: int):
        super().__init__()
        self.partial = partial
        self.width = channels // partial
        self.index: list[int] = [i for i, p in enumerate(primitives) if p != "none"]  # 'none' adds zeros
        self.ops = nn.ModuleList([ScaledOp(primitives[i], self.width * num_edges, num_edges) for i in self.index])
        self.pre_act = any(op.pre_act for op in self.ops)

    def forward(self, states: list[torch.Tensor], alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """``alphas`` (edges x primitives) and ``betas`` (edges) are this step's rows."""
        n, w = len(states), self.width
        x = torch.cat([h[:, :w] for h in states], dim=1) if self.partial > 1 else torch.cat(states, dim=1)
        x_relu = F.relu(x) if self.pre_act else x
        scale = (alphas[:, self.index] * betas[:, None]).repeat_interleave(w, dim=0)  # (n * w, ops)
        out = sum(op(x, x_relu, scale[:, k]) for k, op in enumerate(self.ops))
        out = out.unflatten(1, (n, w)).sum(1)
        if self.partial == 1:
            return out
        bypass = sum(b * h[:, w:] for b, h in zip(betas, states))
        return channel_shuffle(torch.cat([out, bypass], dim=1), self.partial)


class SearchCell(nn.Module):
    """The dense cell: step i reads every earlier state, through the mixed ops of its 2 + i edges."""

    def __init__(self, steps: int, channels: int, primitives: Sequence[str], partial: int):
        super().__init__()
        self.steps = nn.ModuleList([MixedStep(len(r), channels, primitives, partial) for r in dense_edge_rows(steps)])

    def forward(self, inputs: list[torch.Tensor], alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        states = list(inputs)
        for step, edges in zip(self.steps, edge_groups(len(self.steps))):
            states.append(step(states, alphas[edges], betas[edges]))
        return torch.cat(states[2:], dim=1)


def edge_groups(steps: int) -> list[slice]:
    """The slices of the edge list that belong to each step (``dense_edge_rows``)."""
    return [slice(r.start, r.stop) for r in dense_edge_rows(steps)]


class EncoderFreeze(nn.Module):
    """A supernet whose timm encoder may be frozen (``--freeze-encoder``): its weights take no gradient and
    are no weights of the search, and its BatchNorms keep their statistics in training mode too."""

    net: GenotypeNet
    encoder_frozen = False

    def freeze_encoders(self, encoder: SearchEncoder | None) -> None:
        """After ``self.net`` is built: freeze its encoders if ``encoder`` says so."""
        if encoder is not None and encoder.freeze:
            self.encoder_frozen = True
            self.net.encoders.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.encoder_frozen:
            self.net.encoders.eval()
        return self


class CellSupernet(EncoderFreeze):
    """The proxy chain compiled with a search cell as every cell's body; ``alphas`` (edges x primitives)
    and ``betas`` (edges) are the architecture, every other parameter a weight."""

    def __init__(
        self,
        cfg: CellStage,
        num_classes: int,
        primitives: Sequence[str] = DARTS_PRIMITIVES,
        in_chans: int = 3,
        encoder: SearchEncoder | None = None,
    ):
        super().__init__()
        self.primitives = tuple(primitives)
        self.steps = cfg.steps
        self.genotype: Genotype = proxy_chain(
            dense_cell(cfg.steps),
            cfg.layers,
            cfg.levels,
            cfg.channels,
            cfg.stem_reduction,
            cfg.head_channels,
            num_classes,
            encoder=encoder,
        )
        self.net = GenotypeNet(
            self.genotype,
            in_chans=in_chans,
            drop_rate=0.0,
            cell_body=lambda node: SearchCell(cfg.steps, node.channels, self.primitives, cfg.partial),
        )
        self.freeze_encoders(encoder)
        num_edges = dense_edge_count(cfg.steps)
        self.alphas = nn.Parameter(1e-3 * torch.randn(num_edges, len(self.primitives)))
        self.betas = nn.Parameter(1e-3 * torch.randn(num_edges))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas, self.betas]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name not in ("alphas", "betas") and p.requires_grad]

    def edge_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """softmax(alpha) per edge, and beta normalised by a softmax over each node's edges."""
        betas = torch.cat([F.softmax(self.betas[g], dim=0) for g in edge_groups(self.steps)])
        return F.softmax(self.alphas, dim=-1), betas

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_weighted(x, cell_args=self.edge_weights())

    @torch.no_grad()
    def decode_weights(self) -> torch.Tensor:
        """What the decoder ranks: softmax(alpha) times the normalised beta of the edge (PC-DARTS)."""
        alphas, betas = self.edge_weights()
        return alphas * betas[:, None]
