"""Stage 1, the cell search: the supernet, what the log records of it each epoch, and its decoding."""

from __future__ import annotations

from collections.abc import Sequence

from searchers.rspnet.budgets import CellStage, SearchConfig
from searchers.rspnet.decode import CellDecision, decode_cell
from searchers.rspnet.latency_search import LatencyGoal
from searchers.rspnet.supernet import CellSupernet


class CellSearch:
    name = "cell"

    def __init__(
        self, config: SearchConfig, num_classes: int, primitives: Sequence[str], latency: LatencyGoal | None = None
    ):
        self.schedule: CellStage = config.cell
        self.primitives = tuple(primitives)
        self.model = CellSupernet(config.cell, num_classes, self.primitives, encoder=config.encoder)
        self.penalty = None if latency is None else latency.cell_penalty(config, num_classes, self.model)

    def snapshot(self) -> dict:
        """softmax(alpha) per edge and the normalised edge weights, rounded for the log."""
        alphas, betas = self.model.edge_weights()
        latency = {} if self.penalty is None else dict(expected_latency_ms=self.penalty.last_ms)
        return dict(
            alphas=[[round(v, 5) for v in row] for row in alphas.tolist()],
            betas=[round(v, 5) for v in betas.tolist()],
            **latency,
        )

    def decode(self) -> CellDecision:
        return decode_cell(self.model.decode_weights(), self.primitives, self.schedule.steps, self.schedule.skip_cap)
