"""How batches reach the device: loader processes, pinned memory, persistent workers and prefetching, decided
in one place from the device the computation runs on.

On a GPU the input pipeline runs beside the computation: loader processes decode and augment ahead of it
(``prefetch_factor`` batches each), stay up between epochs instead of restarting, and hand over page-locked
batches whose copy to the GPU does not block the host (``non_blocking``). On the CPU loader processes take
their cores from the computation itself, so by default there are none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

MAX_DEFAULT_WORKERS = 8
PREFETCH_BATCHES = 2  # per loader process: enough to hide an uneven batch, little memory held


@dataclass(frozen=True)
class LoaderSettings:
    """A ``DataLoader``'s process and memory settings (``loader_settings`` decides them)."""

    workers: int = 0
    pin_memory: bool = False  # page-locked batches: the host-to-GPU copy may run without blocking
    persistent_workers: bool = False  # loader processes kept between the epochs of a run
    prefetch_factor: int = PREFETCH_BATCHES  # batches each loader process prepares ahead

    def dataloader_options(self) -> dict[str, Any]:
        """``DataLoader`` keyword arguments (without processes, nothing persists or prefetches)."""
        return dict(
            num_workers=self.workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.workers > 0,
            prefetch_factor=self.prefetch_factor if self.workers > 0 else None,
        )

    @property
    def non_blocking(self) -> bool:
        """Copy batches to the device asynchronously (only pinned memory makes that possible)."""
        return self.pin_memory


def default_workers(device: torch.device) -> int:
    """Data-loader processes when none are asked for: on a GPU this process's share of the machine's cores
    (at most 8), so that decoding and augmentation keep up with the GPU; on the CPU none, since loader
    processes there take their cores from the computation itself."""
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))


def loader_settings(device: torch.device, workers: int | None = None) -> LoaderSettings:
    """The loader settings for computing on ``device`` with ``workers`` processes (None: ``default_workers``)."""
    on_gpu = device.type == "cuda"
    return LoaderSettings(
        workers=default_workers(device) if workers is None else workers, pin_memory=on_gpu, persistent_workers=on_gpu
    )
