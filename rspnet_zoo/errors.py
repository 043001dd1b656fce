"""User-facing errors: each renders as one line, and the CLI maps them to exit code 2."""

from __future__ import annotations


class ZooError(Exception):
    """A problem with the user's input (a file, a name, a flag), not a bug."""


class WeightsError(ZooError, FileNotFoundError):
    """Weights are missing, corrupted, not finite, or were built from another spec."""


class SpecError(ZooError, ValueError):
    """A genotype spec is invalid at ``pointer`` (a JSON pointer, '' for the whole document), or could not
    be read at all (``pointer`` None: the message names the file alone)."""

    def __init__(self, pointer: str | None, reason: str, source: str | None = None):
        self.pointer = pointer
        self.reason = reason
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.reason if self.pointer is None else f"{self.pointer or '/'}: {self.reason}"
        return f"{self.source}: {where}" if self.source else where

    def at(self, source: str) -> SpecError:
        return SpecError(self.pointer, self.reason, source)


def pointer(*parts: object) -> str:
    """JSON pointer (RFC 6901) from path parts, for messages: characters that do not print (a newline in a
    key) are shown escaped, so an error stays one line."""
    return "".join("/" + _printable(str(p).replace("~", "~0").replace("/", "~1")) for p in parts)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
