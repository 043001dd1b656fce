"""Reading and writing spec documents: parse -> migrate -> JSON Schema -> semantic checks -> Genotype.

The canonical dump (sorted keys, two-space indent, trailing newline) is the spec's identity: its
sha256 is recorded in every artifact built from it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import ValidationError

from rspnet_zoo.errors import SpecError, ZooError, pointer
from rspnet_zoo.fsutil import read_capped
from rspnet_zoo.spec.heads import HEADS
from rspnet_zoo.spec.migrate import migrate
from rspnet_zoo.spec.models import Genotype
from rspnet_zoo.spec.plan import check_genotype, semantic_errors
from rspnet_zoo.spec.schema import committed_schema
from rspnet_zoo.textutil import json_repr, shorten

MAX_SPEC_BYTES = 8 * 1024 * 1024
MAX_NUMBER_DIGITS = 64  # far above any bound in the schema; Python refuses to parse ints over 4300 digits


class _Refused:
    """Stands in the parsed document where a value is not strict JSON, so its pointer can be named."""

    def __init__(self, reason: str):
        self.reason = reason


class _Object(dict):
    """A JSON object that remembers the first key it saw twice (a plain dict keeps the last silently)."""

    duplicate: str | None = None


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    for key, value in pairs:
        if key in obj and obj.duplicate is None:
            obj.duplicate = key
        obj[key] = value
    return obj


def _number(text: str, parse: Any) -> Any:
    digits = sum(c.isdigit() for c in text)
    if digits > MAX_NUMBER_DIGITS:
        return _Refused(f"a number with {digits} digits, at most {MAX_NUMBER_DIGITS} allowed")
    value = parse(text)
    return value if math.isfinite(value) else _Refused(f"{text} overflows to {value}")


def _strict_loads(text: str) -> Any:
    return json.loads(
        text,
        object_pairs_hook=_object,
        parse_int=lambda t: _number(t, int),
        parse_float=lambda t: _number(t, float),
        parse_constant=lambda t: _Refused(f"{t} is not JSON"),
    )


def _first_refusal(node: Any, path: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], str] | None:
    """The first non-strict value in document order, with its path: duplicate keys, NaN/Infinity,
    numbers too long to be meant."""
    if isinstance(node, _Refused):
        return path, node.reason
    if isinstance(node, _Object) and node.duplicate is not None:
        return (*path, node.duplicate), "duplicate key (JSON objects need unique keys)"
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found = _first_refusal(child, (*path, key))
        if found is not None:
            return found
    return None


def read_spec_text(path: str | Path) -> str:
    """A spec file's text, at most ``MAX_SPEC_BYTES`` of it read (a device or pipe that never ends is cut
    there); every failure is one SpecError naming the file."""
    path = Path(path)
    try:
        return read_capped(path, MAX_SPEC_BYTES).decode("utf-8")
    except ZooError as e:
        raise SpecError(None, f"file is larger than {MAX_SPEC_BYTES // 2**20} MiB", str(path)) from e
    except FileNotFoundError:
        where = "" if path.is_absolute() else f" in {Path.cwd()}"
        raise SpecError(None, f"no such file{where}", str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(None, f"cannot read: {e.__class__.__name__}: {_reason(e)}", str(path)) from None


def _reason(e: Exception) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def load_spec(path: str | Path) -> Genotype:
    """Load and fully validate a spec file; every failure is one SpecError naming the file."""
    return parse_spec(read_spec_text(path), source=str(path))


def strict_json(text: str, source: str | None = None) -> Any:
    """A JSON document read strictly (what specs and built folders' ``config.json`` are read with): invalid
    JSON, nesting too deep to walk, duplicate keys, NaN/Infinity and numbers too long to be meant are one
    SpecError naming where."""
    try:
        doc = _strict_loads(text)
        refused = _first_refusal(doc)
    except json.JSONDecodeError as e:
        raise SpecError("", f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}", source) from None
    except RecursionError:
        raise SpecError("", "invalid JSON: nested too deeply", source) from None
    if refused is not None:
        raise SpecError(pointer(*refused[0]), refused[1], source)
    return doc


def parse_spec(text: str, source: str | None = None) -> Genotype:
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError("", f"document is larger than {MAX_SPEC_BYTES // 2**20} MiB", source)
    doc = strict_json(text, source)
    try:
        return genotype_from_dict(doc)
    except SpecError as e:
        raise e.at(source) if source else e from None


def genotype_from_dict(doc: Any) -> Genotype:
    if not isinstance(doc, dict):
        raise SpecError("", f"a genotype spec is a JSON object, got {type(doc).__name__}")
    doc = migrate(doc)
    head_type = doc["head"].get("type") if isinstance(doc.get("head"), dict) else None
    if isinstance(head_type, str) and head_type not in HEADS:
        raise SpecError(pointer("head", "type"), f"unknown head type '{head_type}' (known: {', '.join(HEADS)})")
    _check_schema(doc)
    try:
        genotype = Genotype.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        raise SpecError(pointer(*err["loc"]), err["msg"]) from None
    check_genotype(genotype)
    return genotype


def spec_errors(path: str | Path, limit: int = 20) -> list[SpecError]:
    """Up to ``limit`` errors of a spec file, where ``load_spec`` stops at the first: every schema
    violation, or past the schema every model violation, or past the model every semantic error
    (``plan.semantic_errors``)."""
    try:
        text = read_spec_text(path)
    except SpecError as e:
        return [e]
    try:
        parse_spec(text, source=str(path))
        return []
    except SpecError as e:
        errors = [e]
    try:
        doc = json.loads(text)
        doc = migrate(doc) if isinstance(doc, dict) else None
    except (ValueError, RecursionError):  # SpecError and JSON errors are ValueErrors
        return errors
    if doc is None:
        return errors
    validator = jsonschema.Draft202012Validator(committed_schema())
    schema_errors = itertools.islice(validator.iter_errors(doc), limit)
    more = [SpecError(pointer(*e.absolute_path), _short(e)) for e in map(_deepest, schema_errors)]
    if not more:
        try:
            more = list(itertools.islice(semantic_errors(Genotype.model_validate(doc)), limit))
        except ValidationError as e:
            more = [SpecError(pointer(*err["loc"]), err["msg"]) for err in e.errors()]
    seen = {(errors[0].pointer, errors[0].reason)}
    for e in more:
        if (e.pointer, e.reason) not in seen:
            seen.add((e.pointer, e.reason))
            errors.append(e.at(str(path)))
    return errors[:limit]


def _check_schema(doc: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(committed_schema())
    error = next(iter(validator.iter_errors(doc)), None)
    if error is not None:
        error = _deepest(error)
        raise SpecError(pointer(*error.absolute_path), _short(error))


def _deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For a failed oneOf/anyOf, report the branch that got furthest into the document."""
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    return error


def _short(error: jsonschema.ValidationError) -> str:
    if error.validator in ("maxItems", "maxProperties"):
        return f"has {len(error.instance)} entries, at most {error.validator_value} allowed"
    if error.validator in (
        "maximum",
        "minimum",
        "exclusiveMaximum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "type",
        "enum",
        "const",
    ):
        return f"{json_repr(error.instance)} is not allowed: {error.validator} {json_repr(error.validator_value)}"
    message = error.message
    return shorten(message, 160)


def canonical_dict(genotype: Genotype) -> dict[str, Any]:
    return genotype.model_dump(mode="json", exclude_defaults=True)


def dump_spec(genotype: Genotype) -> str:
    return json.dumps(canonical_dict(genotype), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def spec_sha256(genotype: Genotype) -> str:
    return hashlib.sha256(dump_spec(genotype).encode("utf-8")).hexdigest()


ARCHITECTURE_FIELDS = ("cells", "encoders", "network", "head", "defaults")  # what builds the model


def architecture_sha256(genotype: Genotype) -> str:
    """sha256 of the network alone: the canonical ``cells``, ``encoders``, ``network``, ``head`` and
    ``defaults``, without the name, version, description and provenance. ``spec_sha256`` covers the whole
    file; two searches that found the same network share this one, whatever they are named and whatever
    their provenance notes measured."""
    doc = {k: v for k, v in canonical_dict(genotype).items() if k in ARCHITECTURE_FIELDS}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
