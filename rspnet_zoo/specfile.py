"""Moved to ``rspnet_zoo.spec.io`` in 0.2.0; this module path goes in 0.3.0."""

import warnings

from rspnet_zoo.spec.io import *  # noqa: F403

warnings.warn(
    "rspnet_zoo.specfile moved to rspnet_zoo.spec.io; the old path goes in 0.3.0", DeprecationWarning, stacklevel=2
)
