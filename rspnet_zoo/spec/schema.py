"""The JSON Schema of the spec, generated from the pydantic models and committed under ``schemas/``."""

from __future__ import annotations

import functools
import json
from typing import Any

from rspnet_zoo.resources import data_dir
from rspnet_zoo.spec.models import FORMAT_VERSION, Genotype

SCHEMA_FILE = f"genotype.v{FORMAT_VERSION}.json"


def generate_schema() -> dict[str, Any]:
    schema = Genotype.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://rspnet-zoo.dev/schemas/genotype.v{FORMAT_VERSION}.json",
        **schema,
    }


def render_schema() -> str:
    return json.dumps(generate_schema(), indent=2, sort_keys=True) + "\n"


# Keywords that are checked in O(1); validating them before "items"/"properties" lets a document
# with a million nodes fail on its size at once instead of after every node is validated.
_CHEAP_FIRST = (
    "type",
    "const",
    "enum",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
    "maxLength",
    "minLength",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "required",
)


def _cheap_first(node: Any) -> Any:
    if isinstance(node, list):
        return [_cheap_first(v) for v in node]
    if not isinstance(node, dict):
        return node
    keys = sorted(node, key=lambda k: (k not in _CHEAP_FIRST, _CHEAP_FIRST.index(k) if k in _CHEAP_FIRST else 0))
    return {
        k: _cheap_first(node[k])
        if k not in ("properties", "$defs")
        else {name: _cheap_first(sub) for name, sub in node[k].items()}
        for k in keys
    }


@functools.lru_cache(maxsize=1)
def committed_schema() -> dict[str, Any]:
    """The shipped schema, keywords reordered for fail-fast validation (same meaning)."""
    return _cheap_first(json.loads((data_dir("schemas") / SCHEMA_FILE).read_text()))
