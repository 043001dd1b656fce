"""What a search run is before anything runs, for both methods: its name, the files it writes, the command
line that reruns it and the one its spec records, and the refusals that need no torch.

Each method builds its request from these (``searchers.rspnet.request``, ``searchers.template.request``), as
``rspnet_zoo.training.tasks`` builds train's and eval's: the CLI parses, calls one constructor and the
search, and renders. Nothing here imports torch, so a run that cannot start says so at once.

Names. A run without ``--name`` (or ``--out``) is named from its method, stage, budget and seed
(``rspnet_both_smoke_s0``); any other setting that changes what it does (a data set, a latency target, an
override, more than one process) adds six hex digits of those settings (``rspnet_both_smoke_s0_5d1c2a``). The
same command always gets the same name, so ``--resume`` finds its run folder, and runs whose settings
differ never share one.

Commands. ``shell`` is the command as given (the ``reproduce:`` and resume lines: rerun in the same folder it
continues or repeats the same run). ``recorded`` is what the spec's provenance keeps: the same options
without the places results go (``--out``, ``--run-dir``) and with input paths relative to the working
folder (a path outside it by its file name: a spec names no folder of the machine that searched it).
Both include ``--nproc`` when more than one process ran: the global batch depends on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import writable_output
from rspnet_zoo.spec.models import Identifier
from rspnet_zoo.textutil import command_line
from rspnet_zoo.training.runs import check_settings
from rspnet_zoo.zoo.home import zoo_home

SEARCHES_DIR = "searches"  # in the zoo home: one run folder per search
CHECKPOINTS = "checkpoint-*.pt"  # what a run folder holds while a search is unfinished
RUN_FILE = "run-record.json"  # the settings and command of the run that owns a folder (a hyphen: never a spec name)
WHERE_OPTIONS = ("out", "run_dir")  # where results go: not what they are
PATH_OPTIONS = ("root", "cell", "stem_weights")  # inputs named by path


def processes_now() -> int:
    """How many processes run this search: torchrun's world size (``--nproc`` starts torchrun), else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_name(name: str) -> str:
    """A spec name is a lower-case identifier, as the spec format requires."""
    try:
        TypeAdapter(Identifier).validate_python(name)
    except ValidationError:
        raise ZooError(f"spec name '{name}' is not a lower-case identifier ([a-z][a-z0-9_]*, at most 64)") from None
    return name


def settings_digest(settings: Mapping[str, Any]) -> str:
    """Six hex digits of ``settings``, paths resolved (the same folder, however it was written)."""

    def plain(value: Any) -> Any:
        return str(Path(value).resolve()) if isinstance(value, Path) else value

    text = json.dumps({k: plain(v) for k, v in sorted(settings.items())}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def default_name(words: Sequence[object], distinguishing: Mapping[str, Any]) -> str:
    """``words`` joined by '_', plus the digest of the ``distinguishing`` settings that were given (not None)."""
    given = {k: v for k, v in distinguishing.items() if v is not None and v != {}}
    base = "_".join(str(w) for w in words)
    return f"{base}_{settings_digest(given)}" if given else base


@dataclass(frozen=True)
class RunFiles:
    """Where a run writes: the spec ``out`` and the ``run_dir`` of checkpoints, logs and plots."""

    name: str
    out: Path
    run_dir: Path

    @classmethod
    def of(cls, name: str | None, out: Path | None, run_dir: Path | None, default: str) -> RunFiles:
        """The given places, else the defaults: the name from ``out``'s stem or ``default``, the run folder
        ``$RSPNET_ZOO_HOME/searches/<name>``, the spec ``<run folder>/<name>.json``."""
        name = check_name(name or (out.stem if out is not None else default))
        run_dir = run_dir or zoo_home() / SEARCHES_DIR / name
        out = out or run_dir / f"{name}.json"
        if out.suffix != ".json":
            raise ZooError(f"{out}: the spec is written as a .json file")
        return cls(name, out, run_dir)


def search_files(
    words: Sequence[object],
    inputs: Mapping[str, Any],
    data: str,
    overrides: Mapping[str, Any],
    name: str | None,
    out: Path | None,
    run_dir: Path | None,
    processes: int = 1,
) -> tuple[RunFiles, str | None]:
    """A search's files, its default name told apart by the inputs, data, settings and processes given; and the
    ``--name`` its reproducing command passes (None where the default follows from the other options)."""
    distinguishing = {**inputs, "data": None if data == "synthetic" else data, "settings": overrides}
    distinguishing["processes"] = processes if processes > 1 else None
    files = RunFiles.of(name, out, run_dir, default_name(words, distinguishing))
    return files, files.name if name or out else None


def claim(files: RunFiles, resume: bool, force: bool, what: str, settings: dict | None = None) -> str:
    """Refuse what a run must not do to the files it would write, before it loads anything: resume nothing,
    resume other ``settings`` than the run folder's ``run-record.json`` records, start over an earlier run or
    overwrite a spec unasked. Returns what ``force`` discards, for the caller to say ('' for nothing):
    never silent."""
    writable_output(files.out)
    writable_output(files.run_dir, folder=True)
    folder = files.run_dir
    checkpoints = sorted(p.name for p in folder.glob(CHECKPOINTS)) if folder.is_dir() else []
    record = folder / RUN_FILE
    earlier = read_run(record)
    another = "or --name NAME to start another beside it"
    if resume and not checkpoints:
        raise ZooError(f"{folder}: no {what} checkpoint to resume")
    if resume and earlier and settings is not None:
        check_settings(record, earlier.get("settings"), json.loads(json.dumps(settings)))
    if not force and files.out.exists() and files.out.parent == folder and not resume:
        finished = f"{folder}: holds a finished {what} ({files.out.name})"
        raise ZooError(f"{finished}; pass --force to start over, {another}")
    if checkpoints and not resume and not force:
        refusal = f"{folder}: holds an earlier {what}"
        raise ZooError(f"{refusal}; pass --resume to continue it, --force to start over, {another}")
    if files.out.exists() and not force:
        raise ZooError(f"{files.out}: exists; pass --force to overwrite it, {another}")
    if not force or resume or not (checkpoints or files.out.exists()):
        return ""
    gone = [*checkpoints] + ([str(files.out)] if files.out.exists() else [])
    made_by = f" (made by `{earlier['command']}`)" if earlier and earlier.get("command") else ""
    return f"the earlier {what} in {folder}{made_by}: {', '.join(gone)}"


def read_run(file: Path) -> dict | None:
    """The ``run-record.json`` of a run folder: the settings and command of the run that owns it (None without)."""
    if not file.is_file():
        return None
    try:
        doc = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ZooError(f"{file}: not a run record ({e}); pass --force to start over") from None
    return doc if isinstance(doc, dict) else None


def run_record(settings: dict, command: str) -> str:
    """The text of a run folder's ``run-record.json``."""
    return json.dumps(dict(settings=settings, command=command), indent=1, sort_keys=True, default=str) + "\n"


def recorded_path(path: Path) -> str:
    """A path as a spec records it: relative to the working folder, else its file name alone."""
    if not path.is_absolute() and ".." not in path.parts:
        return str(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


def commands(
    words: Sequence[str], options: Mapping[str, Any], settings: Mapping[str, Any], processes: int
) -> tuple[str, str]:
    """(shell, recorded): the command line as given and as the spec records it (module docstring)."""
    options = {**options, "nproc": processes if processes > 1 else None}
    shell = command_line(words, dict(options), dict(settings))
    recorded = {
        k: recorded_path(v) if k in PATH_OPTIONS and isinstance(v, Path) else v
        for k, v in options.items()
        if k not in WHERE_OPTIONS
    }
    return shell, command_line(words, recorded, dict(settings))
