"""The zoo layer: what the zoo holds (``catalog``: shipped specs, trained tags, pretrained cfgs), where it lives
(``home``), timm registration (``timm_registration``), the model factory and model references (``registry``),
weight files (``weights``), built folders and their cards (``folder``, ``card``), counts (``stats``) and the
Hugging Face Hub (``hub``).

The names that 0.1 exported from the module ``rspnet_zoo.zoo`` still resolve here, with a
``DeprecationWarning`` naming their new module, until 0.3.
"""

from __future__ import annotations

import importlib
import warnings

_MOVED = {
    "SHIPPED": "rspnet_zoo.zoo.catalog",
    "packaged_tags": "rspnet_zoo.zoo.catalog",
    "home_tags": "rspnet_zoo.zoo.catalog",
    "tag_weights": "rspnet_zoo.zoo.catalog",
    "pretrained_cfg_for": "rspnet_zoo.zoo.catalog",
    "zoo_home": "rspnet_zoo.zoo.home",
    "weights_path": "rspnet_zoo.zoo.home",
    "WEIGHTS_FILE": "rspnet_zoo.zoo.home",
    "refresh_tags": "rspnet_zoo.zoo.timm_registration",
    "create_genotype_net": "rspnet_zoo.zoo.registry",
    "resolve_genotype": "rspnet_zoo.zoo.registry",
    "resolve_ref": "rspnet_zoo.zoo.registry",
    "load_trained": "rspnet_zoo.zoo.registry",
}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"rspnet_zoo.zoo.{name} moved to {_MOVED[name]}.{name}; the old name goes in 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(_MOVED[name]), name)
