"""Moved to ``rspnet_zoo.nn.ops`` in 0.2.0; this module path goes in 0.3.0."""

import warnings

from rspnet_zoo.nn.ops import *  # noqa: F403

warnings.warn("rspnet_zoo.ops moved to rspnet_zoo.nn.ops; the old path goes in 0.3.0", DeprecationWarning, stacklevel=2)
