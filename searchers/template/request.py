"""The request of a template search and its constructor from the options a person gives: the budget with
its overrides, the name, the files and the command lines (``searchers.requests``). Torch-free: a request
that cannot run is refused at once."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rspnet_zoo.errors import ZooError
from searchers.requests import claim, commands, search_files
from searchers.template.budgets import TemplateBudget, resolve_template_budget


@dataclass(frozen=True)
class TemplateSearchRequest:
    budget: str
    config: TemplateBudget
    name: str
    out: Path
    run_dir: Path
    dataset: str = "synthetic"
    data_root: Path | None = None
    seed: int = 0
    workers: int = 1
    latency_target_ms: float | None = None
    stem_weights: Path | None = None
    resume: bool = False
    force: bool = False
    command: str = ""  # what the spec's provenance records (searchers.requests)
    shell_command: str = ""  # the command as given: the reproduce and resume lines
    discards: str = ""  # what --force discards of an earlier run (said in the plan)

    def settings(self) -> dict:
        """What a checkpoint must agree with to be resumed (the worker count may change)."""
        return dict(
            config=self.config.model_dump(mode="json"),
            dataset=self.dataset,
            data_root=str(self.data_root) if self.data_root else None,
            seed=self.seed,
            latency_target_ms=self.latency_target_ms,
            stem_weights=str(self.stem_weights) if self.stem_weights else None,
        )


def check_options(workers: int, latency_target: float | None, stem_weights: Path | None) -> None:
    if workers < 1:
        raise ZooError(f"--workers must be at least 1, not {workers}")
    if latency_target is not None and latency_target <= 0:
        raise ZooError(f"--latency-target must be positive milliseconds, not {latency_target}")
    if stem_weights is not None and not stem_weights.is_file():
        raise ZooError(f"{stem_weights}: no such stem weights file")


def template_request(
    *,
    budget: str = "small",
    data: str = "synthetic",
    root: Path | None = None,
    seed: int = 0,
    name: str | None = None,
    out: Path | None = None,
    run_dir: Path | None = None,
    workers: int = 1,
    latency_target: float | None = None,
    stem_weights: Path | None = None,
    overrides: dict[str, Any] | None = None,
    threads: int | None = None,
    resume: bool = False,
    force: bool = False,
) -> TemplateSearchRequest:
    """The request of ``rspnet-zoo search template`` with these options (``overrides``: budget field ->
    value, as ``--set`` gives them); refuses bad ones and an unasked clobber, without torch."""
    overrides = dict(overrides or {})
    check_options(workers, latency_target, stem_weights)
    config = resolve_template_budget(budget, overrides)
    if root is not None and not root.is_dir():
        raise ZooError(f"{root}: no such folder (the {data} data set root)")
    inputs = dict(data=data, root=root, latency_target=latency_target, stem_weights=stem_weights)
    files, named = search_files(["template", budget, f"s{seed}"], inputs, data, overrides, name, out, run_dir)
    options = dict(budget=budget, seed=seed, name=named, out=out, run_dir=run_dir)
    options |= dict(workers=workers if workers > 1 else None, threads=threads, **inputs)
    shell, recorded = commands(["rspnet-zoo", "search", "template"], options, overrides, processes=1)
    request = TemplateSearchRequest(
        budget=budget,
        config=config,
        name=files.name,
        out=files.out,
        run_dir=files.run_dir,
        dataset=data,
        data_root=root,
        seed=seed,
        workers=workers,
        latency_target_ms=latency_target,
        stem_weights=stem_weights,
        resume=resume,
        force=force,
        command=recorded,
        shell_command=shell,
    )
    return replace(request, discards=claim(files, resume, force, "template search", request.settings()))
