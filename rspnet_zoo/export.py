"""Moved to ``rspnet_zoo.interop.export`` in 0.2.0; this module path goes in 0.3.0."""

import warnings

from rspnet_zoo.interop.export import *  # noqa: F403

warnings.warn(
    "rspnet_zoo.export moved to rspnet_zoo.interop.export; the old path goes in 0.3.0", DeprecationWarning, stacklevel=2
)
