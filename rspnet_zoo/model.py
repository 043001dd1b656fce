"""Moved to ``rspnet_zoo.nn.model`` in 0.2.0; this module path goes in 0.3.0."""

import warnings

from rspnet_zoo.nn.model import *  # noqa: F403

warnings.warn(
    "rspnet_zoo.model moved to rspnet_zoo.nn.model; the old path goes in 0.3.0", DeprecationWarning, stacklevel=2
)
