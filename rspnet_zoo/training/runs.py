"""What every run folder (train and search alike) obeys: an earlier run is never clobbered without
``--force``, and a run resumes only the settings that made it, except the changes resuming supports."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from rspnet_zoo.errors import ZooError, pointer


def check_run(run_dir: Path, checkpoints: list[Path], resume: bool, force: bool, what: str) -> None:
    """Refuse to resume nothing, and to start over an earlier run unless ``force`` (which drops its
    ``checkpoints``)."""
    if resume and not checkpoints:
        raise ZooError(f"{run_dir}: no {what} checkpoint to resume")
    if checkpoints and not resume:
        if not force:
            raise ZooError(f"{run_dir}: holds an earlier {what}; pass --resume to continue it or --force to start over")
        for file in checkpoints:
            file.unlink()


def _flat(settings: dict, prefix: str = "") -> dict:
    """Nested settings (a search's config) as dotted keys, so a difference names the setting itself."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_settings(file: Path, recorded: object, settings: dict, extendable: Collection[str] = ()) -> list[str]:
    """Refuse resuming ``file`` with settings other than its ``recorded`` ones, naming each difference;
    the ``extendable`` settings may differ (the caller checks they only extend the run) and are returned."""
    if not isinstance(recorded, dict):
        raise ZooError(f"{file}: records no run settings; it cannot be resumed (pass --force to start over)")
    recorded, settings = _flat(recorded), _flat(settings)
    changed = sorted(k for k in recorded.keys() | settings.keys() if recorded.get(k) != settings.get(k))
    fixed = [k for k in changed if k not in extendable]
    if fixed:
        differences = ", ".join(f"{k} {recorded.get(k)!r} -> {settings.get(k)!r}" for k in fixed)
        supported = f" (only {', '.join(sorted(extendable))} may change on resume)" if extendable else ""
        raise ZooError(
            f"{file}: was made with other settings: {differences}{supported}; "
            f"resume it with the same settings, or pass --force to start over"
        )
    return changed


def check_fields(file: Path, state: object, fields: Mapping[str, Any], what: str) -> dict:
    """A loaded checkpoint's structure, checked before any of it is used: ``fields`` maps each key to a class
    (``int``, ``dict``, ``torch.Tensor``) or a typed container (``list[str]``: every element checked, none
    converted); one line names the first fault."""
    if not isinstance(state, dict):
        raise ZooError(f"{file}: not a {what} checkpoint (it holds {_a_kind(state)})")
    for key, kind in fields.items():
        found = _a_kind(state[key]) if key in state else "missing"
        if isinstance(kind, type):
            if not isinstance(state.get(key), kind):
                name = kind.__name__
                raise ZooError(
                    f"{file}: not a {what} checkpoint of this run ('{key}' is {found}, not {_a(name)} {name})"
                )
            continue
        try:
            _adapter(kind).validate_python(state.get(key), strict=True)
        except ValidationError as e:
            err = e.errors()[0]
            if err["loc"]:  # inside the value: a command that is not a string, a history row that is not a dict
                key, found = key + pointer(*err["loc"]), _a_kind(err["input"])
            reason = err["msg"][:1].lower() + err["msg"][1:]
            raise ZooError(f"{file}: not a {what} checkpoint of this run ('{key}' is {found}: {reason})") from None
    return state


def _a_kind(value: object) -> str:
    return f"{_a(type(value).__name__)} {type(value).__name__}"


@functools.cache
def _adapter(kind: Any) -> TypeAdapter:
    return TypeAdapter(kind)


def _a(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"
