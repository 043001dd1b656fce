"""Where the package data lives: the shipped specs and schemas (package data in a wheel, the repository in a
checkout) and the shipped trained weights."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """``kind`` is 'genotypes' or 'schemas'."""
    for candidate in (_PACKAGE / "_data" / kind, _PACKAGE.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"rspnet-zoo data folder '{kind}' is missing from this installation")


PACKAGE_WEIGHTS = _PACKAGE / "weights"  # trained tags shipped with the package: '<name>.<tag>.safetensors'


def shipped_specs() -> list[Path]:
    return sorted(data_dir("genotypes").glob("*.json"))
