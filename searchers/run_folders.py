"""What every search run shares: its run folder is never clobbered, it resumes only the same settings, and
the spec it emits is checked as a reader will see it before it is written."""

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


def check_run_folder(
    name: str,
    out: Path,
    run_dir: Path,
    checkpoints: str,
    resume: bool,
    force: bool,
    what: str = "search",
    inputs: Sequence[Path] = (),
) -> list[Path]:
    """Refuse a bad spec name (before the name touches any file), an output that is one of the run's
    ``inputs``, an existing output and an earlier run unless resumed; ``force`` drops the earlier run's
    checkpoints (the files in ``run_dir`` matching the pattern ``checkpoints``). The search then owns
    ``run_dir`` (one search per run folder) and removes the temporaries killed writes left there.
    Returns the checkpoints a resume continues from."""
    check_name(name, "spec name")
    writable_output(out, replace=force, avoid=inputs)
    writable_output(run_dir, folder=True)
    found = sorted(run_dir.glob(checkpoints)) if run_dir.is_dir() else []
    check_run(run_dir, found, resume, force, what)
    clean_leftovers(run_dir)
    return found if resume else []


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
