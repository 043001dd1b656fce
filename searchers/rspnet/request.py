"""The request of an RSPNet search and its constructor from the options a person gives (the CLI's, or a
script's): the budget resolved with the overrides, the batch split over the processes, the name, the files,
the command lines (``searchers.requests``). Torch-free: a request that cannot run is refused at once.

Batch. A budget's ``batch_size`` is the global batch: without ``--batch-size`` each of N processes takes
1/N of it, so a budget is the same search on any number of processes (up to BatchNorm, which normalises per
process). ``--batch-size`` (or ``--set batch_size=``) is per process, as for ``train``: the global batch
is then it times N.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rspnet_zoo.errors import ZooError
from rspnet_zoo.spec.io import load_spec, spec_sha256
from rspnet_zoo.spec.models import Cell
from searchers.requests import claim, commands, processes_now, search_files
from searchers.rspnet.budgets import BUDGETS, SearchConfig, resolve_config

STAGES = ("cell", "path", "both")
CHECKPOINT_EVERY_S = 120.0  # the most training time a Ctrl-C or a kill loses
DEFAULT_SIZE = (512, 1024)  # the input a latency target is for


@dataclass(frozen=True)
class SearchRequest:
    stage: str
    budget: str
    config: SearchConfig  # batch_size: per process
    name: str
    out: Path
    run_dir: Path
    dataset: str = "synthetic"
    data_root: Path | None = None
    seed: int = 0
    cell_spec: Path | None = None  # stage 'path': the spec whose cell is searched over
    cell_name: str | None = None
    resume: bool = False
    force: bool = False
    command: str = ""  # what the spec's provenance records (searchers.requests)
    latency_target_ms: float | None = None  # see searchers.rspnet.latency_search
    latency_size: tuple[int, int] = DEFAULT_SIZE
    shell_command: str = ""  # the command as given: the reproduce and resume lines
    processes: int = field(default_factory=processes_now)
    discards: str = ""  # what --force discards of an earlier run (said in the plan)
    checkpoint_every_s: float = CHECKPOINT_EVERY_S  # a checkpoint within an epoch after this much training
    amp: str | None = None  # bf16: the supernet's forward passes in mixed precision (see searchers.rspnet.bilevel)
    encoder: str | None = None  # a timm name: the cells and paths are searched over its levels (the runner reads them)
    freeze_encoder: bool = False

    @property
    def stages(self) -> tuple[str, ...]:
        return ("cell", "path") if self.stage == "both" else (self.stage,)

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.processes

    def settings(self) -> dict:
        """What a checkpoint must agree with to be resumed."""
        latency = {} if self.latency_target_ms is None else dict(latency=[self.latency_target_ms, *self.latency_size])
        amp = {} if self.amp is None else dict(amp=self.amp)  # recorded when used: earlier checkpoints stay resumable
        encoder = {} if self.encoder is None else dict(encoder=self.encoder, freeze_encoder=self.freeze_encoder)
        return dict(
            **latency,
            **amp,
            **encoder,
            stage=self.stage,
            config=self.config.model_dump(mode="json", exclude={"batch_size", "encoder"}),
            global_batch=self.global_batch,
            seed=self.seed,
            dataset=self.dataset,
            data_root=str(self.data_root) if self.data_root else None,
            cell_spec=str(self.cell_spec) if self.cell_spec else None,
            cell_name=self.cell_name,
        )


def check_stage(stage: str, cell_spec: Path | None) -> None:
    if stage not in STAGES:
        raise ZooError(f"unknown stage '{stage}' (choose {', '.join(STAGES)})")
    if (stage == "path") != (cell_spec is not None):
        raise ZooError(
            "--cell SPEC goes with --stage path, and --stage path needs it"
            if stage == "path"
            else f"--cell is for --stage path; --stage {stage} searches its own cell"
        )


def cell_of(spec: Path, cell_name: str | None) -> tuple[Cell, str]:
    """The cell of ``spec`` the path stage searches over, and the spec's sha256 (its parent)."""
    genotype = load_spec(spec)
    if cell_name is None:
        if len(genotype.cells) != 1:
            raise ZooError(f"{spec}: has cells {', '.join(genotype.cells) or '(none)'}; name one with --cell-name")
        cell_name = next(iter(genotype.cells))
    if cell_name not in genotype.cells:
        raise ZooError(f"{spec}: has no cell '{cell_name}' (it has {', '.join(genotype.cells) or 'none'})")
    cell = genotype.cells[cell_name]
    if cell.reduction or cell.num_inputs != 2:
        raise ZooError(f"{spec}: cell '{cell_name}' must be a two-input normal cell for the path search")
    return cell, spec_sha256(genotype)


def resolve_batch(budget: str, overrides: dict[str, Any], processes: int) -> dict[str, Any]:
    """``overrides`` with the per-process batch: as given, else the budget's global batch split over the
    processes (module docstring)."""
    if "batch_size" in overrides or budget not in BUDGETS:
        return overrides
    batch = BUDGETS[budget].config.batch_size
    if batch % processes:
        raise ZooError(
            f"the {budget} budget's global batch {batch} does not split over {processes} processes; "
            f"pass --batch-size N (per process: the global batch is N x {processes})"
        )
    return {**overrides, "batch_size": batch // processes}


SEARCH_AMP = ("bf16",)


def check_encoder(encoder: str | None, freeze: bool) -> None:
    """What an ``--encoder`` request needs without timm: a name of timm's form; whether timm knows it is
    checked before the search loads anything else (``searchers.rspnet.encoder``)."""
    if freeze and encoder is None:
        raise ZooError("--freeze-encoder goes with --encoder TIMM_NAME")
    if encoder is not None and not re.fullmatch(r"[a-z0-9_]+", encoder):
        raise ZooError(f"--encoder '{encoder}' is not a timm model name (lower-case letters, digits and '_')")


def check_search_amp(amp: str | None) -> str | None:
    """bf16 or none: fp16's loss scaling does not reach the gradients the architecture step takes by
    ``autograd.grad``. Checked with the request, before torch loads."""
    if amp not in (None, *SEARCH_AMP):
        raise ZooError(
            f"--amp {amp}: the search runs in bf16 only (fp16's loss scaling does not reach the gradients the "
            "architecture step takes by autograd.grad); use --amp bf16"
        )
    return amp


def rspnet_request(
    *,
    stage: str = "both",
    budget: str = "small",
    data: str = "synthetic",
    root: Path | None = None,
    seed: int = 0,
    name: str | None = None,
    out: Path | None = None,
    run_dir: Path | None = None,
    cell: Path | None = None,
    cell_name: str | None = None,
    latency_target: float | None = None,
    size: tuple[int, int] | None = None,
    overrides: dict[str, Any] | None = None,
    threads: int | None = None,
    amp: str | None = None,
    encoder: str | None = None,
    freeze_encoder: bool = False,
    resume: bool = False,
    force: bool = False,
    processes: int | None = None,
) -> SearchRequest:
    """The request of ``rspnet-zoo search`` with these options (``overrides``: setting -> value, as
    ``--set`` and the setting flags give them); refuses bad ones and an unasked clobber, without torch."""
    overrides = dict(overrides or {})
    processes = processes or processes_now()
    check_stage(stage, cell)
    check_search_amp(amp)
    check_encoder(encoder, freeze_encoder)
    if size is not None and latency_target is None:
        raise ZooError("--size is the input size of --latency-target; give the target too")
    if latency_target is not None and latency_target <= 0:
        raise ZooError(f"--latency-target must be positive milliseconds, not {latency_target}")
    config = resolve_config(budget, resolve_batch(budget, overrides, processes))
    if cell is not None:
        cell_of(cell, cell_name)
    if root is not None and not root.is_dir():
        raise ZooError(f"{root}: no such folder (the {data} data set root)")
    size = size or DEFAULT_SIZE
    inputs = dict(
        data=data,
        root=root,
        cell=cell,
        cell_name=cell_name,
        latency_target=latency_target,
        size=size if latency_target is not None else None,
        amp=amp,
        encoder=encoder,
        freeze_encoder=freeze_encoder or None,  # off: the name and the command lines of earlier versions
    )
    words = ["rspnet", stage, budget, f"s{seed}"]
    files, named = search_files(words, inputs, data, overrides, name, out, run_dir, processes)
    options = dict(stage=stage, budget=budget, seed=seed, name=named, out=out, run_dir=run_dir, threads=threads)
    shell, recorded = commands(["rspnet-zoo", "search"], {**options, **inputs}, overrides, processes)
    request = SearchRequest(
        stage=stage,
        budget=budget,
        config=config,
        name=files.name,
        out=files.out,
        run_dir=files.run_dir,
        dataset=data,
        data_root=root,
        seed=seed,
        cell_spec=cell,
        cell_name=cell_name,
        resume=resume,
        force=force,
        command=recorded,
        latency_target_ms=latency_target,
        latency_size=size,
        shell_command=shell,
        processes=processes,
        amp=amp,
        encoder=encoder,
        freeze_encoder=freeze_encoder,
    )
    return replace(request, discards=claim(files, resume, force, "search", request.settings()))
