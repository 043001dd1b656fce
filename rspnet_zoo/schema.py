"""The JSON Schema of the spec, generated from the pydantic models and committed under ``schemas/``."""
from __future__ import annotations

import functools
import json
from typing import Any

from .resources import data_dir
from .spec import FORMAT_VERSION, Genotype

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


@functools.lru_cache(maxsize=1)
def committed_schema() -> dict[str, Any]:
    return json.loads((data_dir("schemas") / SCHEMA_FILE).read_text())
