"""Format migrations: one function per step, applied on load until the document is current."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rspnet_zoo.errors import SpecError
from rspnet_zoo.spec.models import FORMAT_VERSION
from rspnet_zoo.textutil import json_repr

# MIGRATIONS[v] turns a format_version v document into a v + 1 one.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def migrate(doc: dict[str, Any]) -> dict[str, Any]:
    version = doc.get("format_version")
    if "format_version" not in doc:
        raise SpecError("", "'format_version' is a required property")
    if isinstance(version, bool) or not isinstance(version, int):
        raise SpecError("/format_version", f"must be an integer, got {json_repr(version)}")
    known = range(FORMAT_VERSION - len(MIGRATIONS), FORMAT_VERSION + 1)
    if version not in known:
        raise SpecError(
            "/format_version",
            f"unknown format_version {version}: this rspnet-zoo reads {known.start}..{known.stop - 1}",
        )
    while version < FORMAT_VERSION:
        doc = MIGRATIONS[version](doc)
        version += 1
        doc["format_version"] = version
    return doc
