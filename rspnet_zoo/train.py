"""Moved to ``rspnet_zoo.training.loop`` in 0.2.0; this module path goes in 0.3.0."""

import warnings

from rspnet_zoo.training.loop import *  # noqa: F403

warnings.warn(
    "rspnet_zoo.train moved to rspnet_zoo.training.loop; the old path goes in 0.3.0", DeprecationWarning, stacklevel=2
)
