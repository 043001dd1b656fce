"""The spec layer: genotype specs as data, without torch or timm.

The pydantic models (``models``), reading and writing spec files (``io``), the JSON Schema, format
migrations, graph checks, lowering to a plan (``plan``), the op and head trait tables (``ops``,
``heads``), diffs and graph pictures. Everything the ``validate`` command and ``--help`` need lives here;
import-linter holds that nothing in this package imports torch, timm or another layer of the package.
"""

from rspnet_zoo.spec.io import dump_spec, genotype_from_dict, load_spec, parse_spec, spec_sha256
from rspnet_zoo.spec.models import (
    FORMAT_VERSION,
    AuxiliaryHead,
    Cell,
    CellStep,
    ClassifierHead,
    ConcatHead,
    DeepLabV3PlusHead,
    Defaults,
    Edge,
    Encoder,
    FusionHead,
    Genotype,
    Head,
    Identifier,
    InputSlot,
    LayerArgs,
    LRASPPHead,
    Network,
    Node,
    Partial,
    Path,
    Provenance,
    SegmentationHead,
    Strict,
    Template,
)

__all__ = [
    "FORMAT_VERSION",
    "AuxiliaryHead",
    "Cell",
    "CellStep",
    "ClassifierHead",
    "ConcatHead",
    "DeepLabV3PlusHead",
    "Defaults",
    "Edge",
    "Encoder",
    "FusionHead",
    "Genotype",
    "Head",
    "Identifier",
    "InputSlot",
    "LayerArgs",
    "LRASPPHead",
    "Network",
    "Node",
    "Partial",
    "Path",
    "Provenance",
    "SegmentationHead",
    "Strict",
    "Template",
    "dump_spec",
    "genotype_from_dict",
    "load_spec",
    "parse_spec",
    "spec_sha256",
]
