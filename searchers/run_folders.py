"""What every search run shares once it runs: its run folder is claimed (``searchers.requests.claim``, then the
earlier run's checkpoints dropped under ``--force``), it resumes only the same settings, and the spec it
emits is checked as a reader will see it before it is written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rspnet_zoo.errors import SpecError
from rspnet_zoo.fsutil import atomic_write_text, clean_leftovers, writable_output
from rspnet_zoo.names import check_name
from rspnet_zoo.spec.io import dump_spec, parse_spec, spec_sha256
from rspnet_zoo.spec.models import Genotype
from rspnet_zoo.training import distributed
from rspnet_zoo.training.loop import load_checkpoint
from rspnet_zoo.training.runs import check_fields, check_run, check_settings
from searchers.requests import CHECKPOINTS, RUN_FILE, RunFiles, claim, run_record


def check_run_folder(
    files: RunFiles,
    resume: bool,
    force: bool,
    settings: dict,
    command: str,
    what: str = "search",
    inputs: Sequence[Path] = (),
) -> list[Path]:
    """Refuse a bad spec name (before the name touches any file) and an output that is a device, a loop or one
    of the run's ``inputs``; claim the run folder (``claim``: an existing output or run); ``force`` drops the
    earlier run's checkpoints. The search then owns ``run_dir`` (one search per run folder): it removes the
    temporaries killed writes left there and records its ``settings`` and ``command`` in ``run-record.json``.
    Returns the checkpoints a resume continues."""
    check_name(files.name, "spec name")
    writable_output(files.out, replace=True, avoid=inputs)  # an existing output: claim says what to do
    writable_output(files.run_dir, folder=True)
    claim(files, resume, force, what, settings)
    checkpoints = sorted(files.run_dir.glob(CHECKPOINTS)) if files.run_dir.is_dir() else []
    check_run(files.run_dir, checkpoints, resume, force, what)
    clean_leftovers(files.run_dir)
    files.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(files.run_dir / RUN_FILE, run_record(settings, command))
    return checkpoints if resume else []


def load_resumable(file: Path, settings: dict, fields: Mapping[str, type]) -> dict:
    """A checkpoint's state, refused when it lacks one of ``fields`` (name -> type) or was made with other
    settings than the ones resuming it."""
    state = check_fields(file, load_checkpoint(file), {"settings": dict, **fields}, "search")
    check_settings(file, state["settings"], settings)
    return state


def write_spec(genotype: Genotype, dest: Path) -> str:
    """Check the spec exactly as a reader will see it, then write it atomically; returns its sha256."""
    text = dump_spec(genotype)
    try:
        parse_spec(text)
    except SpecError as e:  # a searcher bug, not a user error: say what was emitted
        raise RuntimeError(f"the search emitted an invalid spec for {dest}: {e}") from None
    if distributed.is_main():  # under torchrun every rank holds the spec; one writes it
        atomic_write_text(dest, text)
    return spec_sha256(genotype)
