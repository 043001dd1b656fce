"""What a search is before it runs (searchers.requests and each method's constructor): default names that
never collide for different settings and always agree for the same, a batch that fits the processes, the
command lines (as given; as the spec records them, without folders), and the refusals that need no torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rspnet_zoo.errors import ZooError
from searchers.requests import RunFiles, claim, recorded_path, run_record
from searchers.rspnet.request import rspnet_request
from searchers.template.request import template_request

ROOT = Path(__file__).resolve().parents[1]

OPTIONS = st.fixed_dictionaries(
    {},
    optional=dict(
        stage=st.sampled_from(["cell", "both"]),
        budget=st.sampled_from(["smoke", "small"]),
        seed=st.integers(0, 3),
        data=st.sampled_from(["synthetic", "camvid"]),
        latency_target=st.sampled_from([20.0, 60.0]),
        processes=st.sampled_from([1, 2, 4]),
        overrides=st.sampled_from([{}, {"epochs": 60}, {"cell.steps": 3}, {"epochs": 60, "cell.steps": 3}]),
    ),
)


def settings_of(options: dict) -> dict:
    """What the run does: every option, with the defaults filled in."""
    defaults = dict(stage="both", budget="small", seed=0, data="synthetic", latency_target=None, processes=1)
    return {**defaults, "overrides": {}, **options}


@settings(max_examples=60, deadline=None)
@given(OPTIONS, OPTIONS)
def test_default_names_differ_exactly_when_the_settings_do(a, b):
    name_a, name_b = (rspnet_request(**o).name for o in (a, b))
    assert (name_a == name_b) == (settings_of(a) == settings_of(b))
    assert rspnet_request(**a).name == name_a  # the same command, the same name: --resume finds its folder


def test_the_reported_collisions_get_names_of_their_own():
    plain = rspnet_request(stage="both", budget="smoke")
    assert plain.name == "rspnet_both_smoke_s0"
    others = {
        rspnet_request(stage="both", budget="smoke", **o).name for o in ({"latency_target": 20.0}, {"processes": 2})
    }
    assert len(others) == 2 and plain.name not in others
    assert all(n.startswith("rspnet_both_smoke_s0_") for n in others)
    assert template_request(budget="smoke").name == "template_smoke_s0"
    assert template_request(budget="smoke", latency_target=5.0).name.startswith("template_smoke_s0_")


def test_a_budget_is_one_global_batch_on_any_number_of_processes():
    one, two = rspnet_request(budget="smoke"), rspnet_request(budget="smoke", processes=2)
    assert (one.config.batch_size, one.global_batch) == (4, 4)
    assert (two.config.batch_size, two.global_batch) == (2, 4)
    assert two.settings()["global_batch"] == one.settings()["global_batch"]  # resumable into each other
    explicit = rspnet_request(budget="smoke", processes=2, overrides={"batch_size": 8})  # --batch-size: per process
    assert (explicit.config.batch_size, explicit.global_batch) == (8, 16)
    with pytest.raises(ZooError, match="global batch 4 does not split over 3 processes; pass --batch-size"):
        rspnet_request(budget="smoke", processes=3)


def test_the_command_lines_rerun_the_search_and_the_recorded_one_names_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cell = tmp_path / "specs" / "parent.json"
    cell.parent.mkdir()
    cell.write_text((ROOT / "genotypes" / "rspnet_small.json").read_text())
    outside = tmp_path.parent / f"{tmp_path.name}_data"  # a data root outside the working folder
    outside.mkdir()
    request = rspnet_request(
        stage="path", budget="smoke", cell=cell, root=outside, out=tmp_path / "found.json",
        run_dir=tmp_path / "run", processes=2, latency_target=20.0, overrides={"epochs": 3},
    )  # fmt: skip
    shell, recorded = request.shell_command, request.command
    assert "--nproc 2" in shell and "--nproc 2" in recorded  # the global batch depends on it
    assert f"--out {tmp_path / 'found.json'}" in shell and f"--run-dir {tmp_path / 'run'}" in shell
    assert "--out" not in recorded and "--run-dir" not in recorded and str(tmp_path) not in recorded
    assert "--cell specs/parent.json" in recorded and f"--root {outside.name}" in recorded  # relative, else the name
    assert "--name found" in recorded  # the name --out gave
    assert "--set epochs=3" in shell and "--set epochs=3" in recorded
    assert recorded_path(Path("a/b.json")) == "a/b.json"


def test_force_says_what_it_discards_and_an_earlier_run_is_refused_naming_every_way_out(tmp_path):
    files = RunFiles("net", tmp_path / "run" / "net.json", tmp_path / "run")
    files.run_dir.mkdir()
    (files.run_dir / "checkpoint-cell.pt").write_bytes(b"x")
    with pytest.raises(ZooError, match="holds an earlier search; pass --resume to continue it, --force to start"):
        claim(files, resume=False, force=False, what="search")
    with pytest.raises(ZooError, match="or --name NAME to start another beside it"):
        claim(files, resume=False, force=False, what="search")
    assert (
        claim(files, resume=False, force=True, what="search")
        == f"the earlier search in {files.run_dir}: checkpoint-cell.pt"
    )
    (files.run_dir / "run-record.json").write_text(run_record(dict(seed=0), "rspnet-zoo search --seed 0"))
    assert "(made by `rspnet-zoo search --seed 0`)" in claim(files, resume=False, force=True, what="search")
    assert claim(files, resume=True, force=False, what="search", settings=dict(seed=0)) == ""
    with pytest.raises(ZooError, match="run-record.json: was made with other settings: seed 0 -> 1"):  # no torch
        claim(files, resume=True, force=False, what="search", settings=dict(seed=1))
    (files.run_dir / "checkpoint-cell.pt").unlink()
    files.out.write_text("{}")
    with pytest.raises(ZooError, match="holds a finished search \\(net.json\\); pass --force to start over, or --name"):
        claim(files, resume=False, force=False, what="search")


def test_a_taken_run_folder_is_refused_before_torch_loads(tmp_path):
    """The second run of the same command: refused in one line naming --name, without importing torch."""
    home = tmp_path / "home"
    run_dir = home / "searches" / "rspnet_both_smoke_s0"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint-cell.pt").write_bytes(b"an earlier search")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RSPNET_ZOO_HOME": str(home)}
    args = [sys.executable, "-X", "importtime", "-m", "rspnet_zoo", "search", "--stage", "both", "--budget", "smoke"]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert errors == [
        f"rspnet-zoo: error: {run_dir}: holds an earlier search; pass --resume to continue it, --force to start "
        f"over, or --name NAME to start another beside it"
    ]
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import t")}
    assert "rspnet_zoo.cli" in imported and "torch" not in imported
