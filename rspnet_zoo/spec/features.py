"""A resolved feature map: what heads read and what their parameter bounds are computed from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeaturePlan:
    state: int  # 0 is the image; node i of the network is state i + 1
    channels: int
    reduction: int
