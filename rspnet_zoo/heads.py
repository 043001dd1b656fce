"""Moved to ``rspnet_zoo.nn.heads`` in 0.2.0; this module path goes in 0.3.0."""

import warnings

from rspnet_zoo.nn.heads import *  # noqa: F403

warnings.warn(
    "rspnet_zoo.heads moved to rspnet_zoo.nn.heads; the old path goes in 0.3.0", DeprecationWarning, stacklevel=2
)
