"""torch's benchmark ``Timer``, imported without a warning that concerns nothing here."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch.utils.benchmark import Timer

CPP_EXTENSION_LOGGER = "torch.utils.cpp_extension"


def benchmark_timer() -> type[Timer]:
    """``torch.utils.benchmark.Timer``. Importing it imports torch's C++-extension builder, which warns
    "No CUDA runtime is found" on a machine with a CUDA toolkit and no GPU, once, as it loads: a note for
    building extensions, which nothing here does, so that logger is quiet while it loads."""
    logger = logging.getLogger(CPP_EXTENSION_LOGGER)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils.benchmark import Timer
    finally:
        logger.setLevel(level)
    return Timer
