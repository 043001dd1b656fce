"""rspnet-zoo: a declarative genotype compiler and timm model zoo for NAS-found segmentation networks.

``import rspnet_zoo`` registers every shipped spec as a timm architecture. It does so without paying for
torch and timm up front, so that ``rspnet-zoo --help``, ``--version`` and ``validate`` start in a fraction
of a second:

* the public names that need torch (``GenotypeNet``, ``SHIPPED``, ``optimize``, ...) resolve on first use
  (PEP 562 ``__getattr__``);
* registration runs as soon as timm is there: at once when timm is already imported, otherwise right after
  ``import timm`` finishes, or after whichever of our modules imported timm has finished (an import hook
  that removes itself once the zoo is registered). ``timm.create_model`` and ``timm.list_models`` can only
  be reached through ``import timm``, so no timm user ever sees the registry without our names.

The alternative, a console entry point outside the package, cannot work: the CLI imports the spec modules
of this package, and any ``rspnet_zoo.x`` import runs this file first.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

from .errors import SpecError, ZooError
from .spec import Genotype
from .specfile import dump_spec, load_spec, parse_spec, spec_sha256

__version__ = "0.1.0"

# name -> the submodule that defines it; imported (with torch) on first access
_LAZY = {
    "GenotypeNet": "model",
    "optimize": "optimize",
    "SHIPPED": "zoo",
    "create_genotype_net": "zoo",
    "keep_freed_memory": "memory",
    "zoo_home": "zoo",
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
    "spec_sha256",
    "zoo_home",
]


class _Package(types.ModuleType):
    def __getattr__(self, name: str):
        if name not in _LAZY:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{self.__name__}.{_LAZY[name]}"), name)

    def __setattr__(self, name: str, value) -> None:
        # importing the submodule rspnet_zoo.optimize binds it here; the public name stays the function
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def _register_when_safe(just_loaded: str | None = None) -> None:
    """Import the zoo (which registers) once timm is loaded and none of our modules is half-loaded."""
    if f"{__name__}.zoo" in sys.modules:  # registered, or registering right now
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        return
    if "timm" not in sys.modules:
        return
    for name, module in list(sys.modules.items()):
        if name != just_loaded and (name == "timm" or name.startswith(f"{__name__}.")):
            if getattr(getattr(module, "__spec__", None), "_initializing", False):
                return  # e.g. rspnet_zoo.heads imported timm: the zoo needs heads whole, so wait for it
    importlib.import_module(f"{__name__}.zoo")


class _RegisterWithTimm(importlib.abc.MetaPathFinder):
    """Finds timm and our submodules as the path finder does, and checks after each has loaded whether
    the zoo can register now (see ``_register_when_safe``)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "timm" and not fullname.startswith(f"{__name__}."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _register_when_safe(fullname)

        spec.loader.exec_module = exec_then_register
        return spec


_finder = _RegisterWithTimm()
sys.meta_path.insert(0, _finder)
_register_when_safe()
