"""User-facing errors: each renders as one line, and the CLI maps them to exit code 2."""

from __future__ import annotations


class ZooError(Exception):
    """A problem with the user's input (a file, a name, a flag), not a bug."""


class WeightsError(ZooError, FileNotFoundError):
    """Weights are missing, corrupted, not finite, or were built from another spec."""


class SpecError(ZooError, ValueError):
    """A genotype spec is invalid at ``pointer`` (a JSON pointer, '' for the whole document)."""

    def __init__(self, pointer: str, reason: str, source: str | None = None):
        self.pointer = pointer
        self.reason = reason
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.pointer or '/'}: {self.reason}"
        return f"{self.source}: {where}" if self.source else where

    def at(self, source: str) -> SpecError:
        return SpecError(self.pointer, self.reason, source)


def pointer(*parts: object) -> str:
    """JSON pointer (RFC 6901) from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
