"""Moved to ``rspnet_zoo.perf.latency`` in 0.2.0; this module path goes in 0.3.0."""

import warnings

from rspnet_zoo.perf.latency import *  # noqa: F403

warnings.warn(
    "rspnet_zoo.latency moved to rspnet_zoo.perf.latency; the old path goes in 0.3.0", DeprecationWarning, stacklevel=2
)
