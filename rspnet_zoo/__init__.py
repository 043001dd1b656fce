"""rspnet-zoo: a declarative genotype compiler and timm model zoo for NAS-found segmentation networks.

``import rspnet_zoo`` registers every shipped spec as a timm architecture.
"""

__version__ = "0.1.0"

from .errors import SpecError, ZooError  # noqa: E402
from .model import GenotypeNet  # noqa: E402
from .optimize import optimize  # noqa: E402
from .spec import Genotype  # noqa: E402
from .specfile import dump_spec, load_spec, parse_spec, spec_sha256  # noqa: E402
from .zoo import SHIPPED, create_genotype_net, zoo_home  # noqa: E402

__all__ = [
    "Genotype",
    "GenotypeNet",
    "SHIPPED",
    "SpecError",
    "ZooError",
    "__version__",
    "create_genotype_net",
    "dump_spec",
    "load_spec",
    "optimize",
    "parse_spec",
    "spec_sha256",
    "zoo_home",
]
