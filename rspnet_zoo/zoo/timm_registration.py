"""timm's view of the zoo: one registered architecture per shipped spec, plus ``rspnet`` for any spec.

timm has no plugin discovery: ``import rspnet_zoo`` calls ``register()`` once timm is imported (see the
package docstring). Registering reads the shipped specs and the package's trained tags (package data) and
nothing else: the zoo home is read when a name is built (the entrypoints call ``refresh_tags()`` first) and
when ``rspnet-zoo train`` writes a tag. The entrypoints import the builder on their first call, so that
registering loads no module of ours that imports timm, whichever module imported timm first.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from timm.models import generate_default_cfgs, register_model

from rspnet_zoo.spec import Genotype, genotype_from_dict
from rspnet_zoo.zoo.catalog import SHIPPED, pretrained_cfgs

GENERIC_ARCH = "rspnet"
DEFAULT_GENERIC = "rspnet_small"

# timm's register_model reads the cfgs of an entrypoint from its module's ``default_cfgs``
default_cfgs: dict[str, Any] = {}


def _create(name: str, genotype: Genotype | dict, pretrained: bool, **kwargs: Any):
    from rspnet_zoo.zoo.registry import create_genotype_net

    refresh_tags()
    return create_genotype_net(name, genotype, pretrained, **kwargs)


def _entrypoint(name: str) -> Callable[..., Any]:
    def entrypoint(pretrained: bool = False, genotype: Genotype | dict | None = None, **kwargs: Any):
        return _create(name, genotype or SHIPPED[name], pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = SHIPPED[name].description or f"The '{name}' genotype spec."
    return entrypoint


def rspnet(pretrained: bool = False, genotype: Genotype | dict | None = None, **kwargs: Any):
    """Any genotype spec, passed as ``genotype=``: how built folders of unregistered specs rebuild.
    Without one it builds the reference RSPNet, ``rspnet_small``."""
    if genotype is None:
        genotype = SHIPPED[DEFAULT_GENERIC]
    if not isinstance(genotype, Genotype):
        genotype = genotype_from_dict(genotype)
    return _create(genotype.name, genotype, pretrained, **kwargs)


def _register(names: list[str], cfgs: dict[str, Any]) -> None:
    default_cfgs.update({name: cfgs[name] for name in names})
    with warnings.catch_warnings():  # timm warns on every re-registration; refreshing is deliberate
        warnings.filterwarnings("ignore", message="Overwriting .* in registry")
        for name in names:
            register_model(_entrypoint(name))


def register() -> None:
    """Register every shipped spec and the generic ``rspnet`` (idempotent)."""
    if default_cfgs:
        return
    _register(list(SHIPPED), generate_default_cfgs(pretrained_cfgs(read_home=False)))
    register_model(rspnet)


def refresh_tags() -> None:
    """Register again every spec whose trained tags changed (read from the zoo home now), so that
    ``timm.list_pretrained()`` names exactly the tags that can be loaded."""
    register()
    fresh = generate_default_cfgs(pretrained_cfgs())
    _register([name for name in SHIPPED if fresh[name] != default_cfgs.get(name)], fresh)
