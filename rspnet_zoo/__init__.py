"""rspnet-zoo: a declarative genotype compiler and timm model zoo for NAS-found segmentation networks.

``import rspnet_zoo`` registers every shipped spec as a timm architecture without paying for torch and timm
up front, so that ``rspnet-zoo --help``, ``--version`` and ``validate`` start in a fraction of a second:

* the public names that need torch (``GenotypeNet``, ``SHIPPED``, ``optimize``, ...) resolve on first use
  (PEP 562 module ``__getattr__``);
* registration runs when timm is there: at once when timm is already imported, otherwise right after
  ``import timm`` finishes (``_AfterTimmImport``, a one-shot post-import hook on the ``timm`` module alone,
  which removes itself when it fires). ``timm.create_model`` can only be reached through ``import timm``,
  so no timm user sees the registry without our names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

from rspnet_zoo.errors import SpecError, ZooError
from rspnet_zoo.spec import Genotype, dump_spec, load_spec, parse_spec, spec_sha256

__version__ = "0.2.0"

# public name -> the module that defines it; imported (with torch) on first access
_LAZY = {
    "GenotypeNet": "rspnet_zoo.nn.model",
    "optimize": "rspnet_zoo.nn.fold",
    "SHIPPED": "rspnet_zoo.zoo.catalog",
    "create_genotype_net": "rspnet_zoo.zoo.registry",
    "keep_freed_memory": "rspnet_zoo.perf.memory",
    "refresh_tags": "rspnet_zoo.zoo.timm_registration",
    "zoo_home": "rspnet_zoo.zoo.home",
}

__all__ = [
    "Genotype",
    "GenotypeNet",
    "SHIPPED",
    "SpecError",
    "ZooError",
    "__version__",
    "create_genotype_net",
    "dump_spec",
    "keep_freed_memory",
    "load_spec",
    "optimize",
    "parse_spec",
    "refresh_tags",
    "spec_sha256",
    "zoo_home",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _register_with_timm() -> None:
    from rspnet_zoo.zoo.timm_registration import register  # imports timm: only called once timm is loaded

    register()


class _AfterTimmImport(importlib.abc.MetaPathFinder):
    """Finds ``timm`` through the finders after this one, and registers the zoo once timm's module has run."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)  # one shot; find_spec below then asks the remaining finders
        spec = importlib.util.find_spec("timm")
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            exec_timm = spec.loader.exec_module

            def exec_then_register(module):
                exec_timm(module)
                _register_with_timm()

            spec.loader.exec_module = exec_then_register
        return spec


if "timm" in sys.modules:
    _register_with_timm()
elif not any(isinstance(finder, _AfterTimmImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AfterTimmImport())
