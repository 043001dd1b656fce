"""Importers: published genotypes in their original encodings -> spec documents.

Each importer parses its encoding without evaluating code (``ast`` and ``ast.literal_eval`` only),
refuses malformed input with one line that says what was expected, and returns a validated
``Genotype``; ``rspnet-zoo import`` writes it with ``dump_spec``.
"""

from __future__ import annotations

import ast
from typing import Any

from rspnet_zoo.errors import ZooError
from rspnet_zoo.textutil import shorten

MAX_ENCODING_CHARS = 65_536


class GenotypeImportError(ZooError, ValueError):
    """An original encoding that does not parse or does not describe a valid architecture."""


def literal(text: str, expected: str) -> Any:
    """A Python literal (lists, tuples, numbers, strings), never evaluated as code."""
    source = text.strip()
    if len(source) > MAX_ENCODING_CHARS:
        raise GenotypeImportError(f"expected {expected}; got {len(source)} characters, more than {MAX_ENCODING_CHARS}")
    try:
        return ast.literal_eval(source)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise GenotypeImportError(f"expected {expected}; got {_clip(source)}") from None


def int_list(value: Any, expected: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise GenotypeImportError(f"expected {expected}; got {_clip(repr(value))}")
    return list(value)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return repr(shorten(text, 60))
