"""The zoo home: where built folders and trained tags live (``$RSPNET_ZOO_HOME``). No torch, no spec loading."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "RSPNET_ZOO_HOME"
WEIGHTS_FILE = "model.safetensors"
MAX_CONFIG_BYTES = 16 * 2**20  # a built folder's config.json: the spec (at most 8 MiB) and its cfg


def zoo_home() -> Path:
    """``$RSPNET_ZOO_HOME``; empty counts as unset, so it never means the working directory."""
    return Path(os.environ.get(HOME_ENV) or "~/.cache/rspnet-zoo").expanduser()


def weights_path(name: str) -> Path:
    """The default build of a registered name: ``<home>/<name>/model.safetensors``."""
    return zoo_home() / name / WEIGHTS_FILE
