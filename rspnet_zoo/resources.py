"""Where the shipped specs and schemas live: package data in a wheel, the repository in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """``kind`` is 'genotypes' or 'schemas'."""
    for candidate in (_PACKAGE / "_data" / kind, _PACKAGE.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"rspnet-zoo data folder '{kind}' is missing from this installation")


def shipped_specs() -> list[Path]:
    return sorted(data_dir("genotypes").glob("*.json"))
