"""User-given names: spec names, tags, run names and the folder names made of them.

One grammar, the spec's identifier rules, checked before a name reaches any file operation: a name has
no separator, no ``..``, no control character, so ``folder / name`` always stays inside ``folder``.
The spec model takes its identifier pattern from here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rspnet_zoo.errors import ZooError
from rspnet_zoo.textutil import json_repr

MAX_NAME = 64
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"  # the spec's identifier (schemas/ holds it as written here)
_NAME = r"[a-z][a-z0-9_]{0,63}"
_TAG = r"[a-z0-9_]{1,64}"
TAG_PATTERN = rf"^{_TAG}$"  # a weights tag (the zoo's and timm's pretrained tags)


@dataclass(frozen=True)
class Grammar:
    noun: str
    rule: str
    pattern: re.Pattern[str]


NAME = Grammar("lower-case identifier", "[a-z][a-z0-9_]*, at most 64 characters", re.compile(_NAME))
TAG = Grammar("tag", "lower-case letters, digits and _, at most 64", re.compile(_TAG))
FOLDER = Grammar(
    "folder name", "NAME or NAME.TAG: lower-case letters, digits and _", re.compile(rf"{_NAME}(\.{_TAG})?")
)


def check_name(value: object, what: str, grammar: Grammar = NAME) -> str:
    """``value`` when it is a whole match of ``grammar``; else one ZooError line naming ``what`` (a flag, a field)
    and the value as Python writes it (control characters escaped)."""
    if isinstance(value, str) and grammar.pattern.fullmatch(value):
        return value
    raise ZooError(f"{what}: {json_repr(value)} is not a {grammar.noun} ({grammar.rule})")
