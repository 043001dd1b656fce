"""Stage 2, the path-attention search: the fixed cell on the lattice, every candidate path weighted.

The supernet is the compiled lattice spec (``GenotypeNet``, RSP partial stages included) whose
attention fusions take their weights from learnable logits: one softmax over each node's candidates,
shared by both of its cell inputs. Decoding keeps several paths per node where the attention says so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.spec.models import Cell
from searchers.rspnet.budgets import PathStage, SearchConfig, SearchEncoder
from searchers.rspnet.decode import PathDecision, decode_paths
from searchers.rspnet.latency_search import LatencyGoal
from searchers.rspnet.structures import head_candidates, lattice, lattice_roots, path_network
from searchers.rspnet.supernet import EncoderFreeze


class PathSupernet(EncoderFreeze):
    def __init__(self, cell: Cell, stage: PathStage, num_classes: int, encoder: SearchEncoder | None = None):
        super().__init__()
        self.lattice = lattice(stage.layers, stage.two_back, stage.stem_reduction, stage.finest_layers, encoder)
        genotype = path_network(
            cell,
            self.lattice,
            stage.channels,
            stage.rsp_ratio,
            stage.rsp_depths,
            num_classes,
            head_channels=stage.head_channels,
            encoder=encoder,
        )
        self.net = GenotypeNet(genotype)
        self.freeze_encoders(encoder)
        width = max(len(n.candidates) for n in self.lattice)
        self.logits = nn.Parameter(1e-3 * torch.randn(len(self.lattice), width))
        mask = torch.full((len(self.lattice), width), float("-inf"))
        for r, n in enumerate(self.lattice):
            mask[r, : len(n.candidates)] = 0.0
        self.register_buffer("mask", mask)
        # per network node: its attention row (-1 for the stems) and, per input, each path's column
        rows = {n.id: r for r, n in enumerate(self.lattice)}
        by_id = {n.id: n for n in self.lattice}
        self.rows: list[int] = [rows.get(node.id, -1) for node in genotype.network.nodes]
        self.columns: list[list[list[int]]] = [
            [[by_id[node.id].candidates.index(p.node) for p in slot.paths] for slot in node.inputs]
            if node.id in by_id
            else []
            for node in genotype.network.nodes
        ]

    def fusion_weights(self) -> list[list[torch.Tensor]]:
        """Per network node, per input, the attention of its paths (none for the stems: they keep the spec's)."""
        attention = self.attention()
        return [[attention[row, cols] for cols in node] for row, node in zip(self.rows, self.columns)]

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.logits]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.net.parameters() if p.requires_grad]

    def attention(self) -> torch.Tensor:
        return F.softmax(self.logits + self.mask, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_weighted(x, self.fusion_weights())


class PathSearch:
    name = "path"

    def __init__(self, config: SearchConfig, cell: Cell, num_classes: int, latency: LatencyGoal | None = None):
        self.schedule: PathStage = config.path
        self.cell = cell
        self.model = PathSupernet(cell, config.path, num_classes, config.encoder)
        self.penalty = None if latency is None else latency.path_penalty(config, cell, num_classes, self.model)

    def snapshot(self) -> dict:
        attention = self.model.attention().tolist()
        latency = {} if self.penalty is None else dict(expected_latency_ms=self.penalty.last_ms)
        return dict(
            attention={
                n.id: {src: round(w, 5) for src, w in zip(n.candidates, row)}
                for n, row in zip(self.model.lattice, attention)
            },
            **latency,
        )

    def decode(self) -> PathDecision:
        attention = self.model.attention().detach()
        nodes = self.model.lattice
        return decode_paths(
            {n.id: n.candidates for n in nodes},
            {n.id: attention[r, : len(n.candidates)].tolist() for r, n in enumerate(nodes)},
            head=head_candidates(nodes),
            topk=self.schedule.topk,
            threshold=self.schedule.threshold,
            roots=lattice_roots(nodes),
        )
