"""`rspnet-zoo search`: smoke searches of each stage emit specs that validate, compile and build;
a resumed search and a repeated seed reach the same spec; bad requests are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rspnet_zoo import GenotypeNet, load_spec, spec_sha256
from rspnet_zoo.spec.io import architecture_sha256
from searchers.rspnet.budgets import resolve_config
from searchers.rspnet.runner import SearchRequest, search

SMOKE = ("--budget", "smoke", "--no-progress")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def architecture(path: Path) -> dict:
    """What a search decides: everything but provenance (whose wall time differs run to run)."""
    doc = json.loads(path.read_text())
    return {k: doc[k] for k in ("cells", "network", "head")}


def assert_compiles(path: Path) -> None:
    genotype = load_spec(path)
    model = GenotypeNet(genotype).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 40, 56))
    assert out.shape == (1, genotype.defaults.num_classes, 40, 56)


@pytest.fixture(scope="module")
def both_spec(tmp_path_factory):
    """One smoke search of both stages, shared by the tests that only read its result."""
    tmp = tmp_path_factory.mktemp("both")
    out = tmp / "found.json"
    request = SearchRequest(
        stage="both",
        budget="smoke",
        config=resolve_config("smoke"),
        name="found",
        out=out,
        run_dir=tmp / "run",
        command="rspnet-zoo search --stage both --budget smoke",
    )
    summary = search(request)
    return out, summary, tmp / "run"


def test_both_stages_emit_a_spec_that_validates_compiles_and_builds(both_spec, run_cli, tmp_path):
    out, summary, run_dir = both_spec
    code, stdout, stderr = run_cli("validate", str(out), "--json")
    assert code == 0, stderr
    assert json.loads(stdout)[0]["sha256"] == summary["sha256"] == spec_sha256(load_spec(out))
    assert_compiles(out)
    code, stdout, stderr = run_cli("build", str(out), "--out", str(tmp_path), "--json")
    assert code == 0, stderr
    assert (tmp_path / "found" / "model.safetensors").is_file()

    g = load_spec(out)
    assert list(g.cells) == ["normal"] and all(e.op != "none" for s in g.cells["normal"].steps for e in s.edges)
    cells = [n for n in g.network.nodes if n.cell]
    assert all(
        slot.fuse == "attention" and all(p.weight is not None for p in slot.paths) for n in cells for slot in n.inputs
    )
    assert any(n.partial is not None for n in cells)  # RSP on the deep levels (smoke reaches 1/16)
    assert any(len(slot.paths) > 1 for n in cells for slot in n.inputs)  # top-2: several fused paths


def test_provenance_records_the_run_and_its_stage_one_parent(both_spec):
    out, summary, run_dir = both_spec
    p = load_spec(out).provenance
    assert (p.stage, p.seed, p.dataset, p.budget, p.epochs) == ("both", 0, "synthetic", "smoke", 4)
    assert p.tool_version and p.command.startswith("rspnet-zoo search --stage both")
    assert p.wall_time_s is None and summary["wall_time_s"] > 0  # the time is the run's, not the spec's
    parent = load_spec(run_dir / "cell.json")
    assert p.parent_sha256 == spec_sha256(parent) == summary["parent_sha256"]
    assert parent.cells == load_spec(out).cells
    assert "skip-connects" in p.notes and "path search" in p.notes


def test_the_run_folder_has_a_log_row_per_epoch_and_the_plots(both_spec):
    _, summary, run_dir = both_spec
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows] == [("cell", 1), ("cell", 2), ("path", 1), ("path", 2)]
    assert len(rows[0]["alphas"]) == 5 and all(abs(sum(a) - 1) < 1e-3 for a in rows[0]["alphas"])
    assert set(rows[-1]["attention"]) == {"l1_r4", "l1_r8", "l2_r4", "l2_r8", "l2_r16"}
    assert rows[-1]["arch_miou"] is not None and rows[0]["arch_miou"] is None  # the first epoch is warm-up
    for name in ("alphas.png", "cell.png", "attention.png", "network.png", "curves-cell.png", "curves-path.png"):
        assert (run_dir / name).read_bytes()[:4] == b"\x89PNG"
        assert str(run_dir / name) in summary["plots"]


def test_the_spec_goes_into_the_run_folder_and_the_printed_plan_changes_nothing(
    both_spec, run_cli, zoo_home, tmp_path, monkeypatch
):
    """Without --out the spec lands in the run folder, not in a checkout's genotypes/ (which would register
    it); the estimate before the start (no --json) runs in a fork of the RNG: the same search results."""
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli("search", *SMOKE)
    assert code == 0, stderr
    run_dir = zoo_home / "searches" / "rspnet_both_smoke_s0"
    out = run_dir / "rspnet_both_smoke_s0.json"
    assert f"spec -> {out}" in stderr and "estimated duration on this machine" in stderr
    assert str(out) in "".join(stdout.split())  # the summary names it (rich may wrap the path)
    assert architecture(out) == architecture(both_spec[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo-home"]
    assert "--out" not in load_spec(out).provenance.command  # the default is not spelled out


def test_cell_stage_alone_emits_the_cell_on_the_proxy_chain_it_was_configured_with(run_cli, tmp_path):
    out = tmp_path / "cell_only.json"
    primitives = ["none", "skip_connect", "sep_conv_3x3"]
    settings = dict(stem_reduction=2, levels=1, primitives=primitives)
    sets = [arg for k, v in settings.items() for arg in ("--set", f"cell.{k}={json.dumps(v)}")]
    code, stdout, stderr = run_cli("search", "--stage", "cell", *SMOKE, *sets, "--out", str(out), "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["name"] == "cell_only" and "paths" not in summary and summary["parent_sha256"] is None
    g = load_spec(out)
    assert g.provenance.stage == "cell" and g.provenance.epochs == 2
    assert summary["cell"]["skips"] <= 2
    cells = [n for n in g.network.nodes if n.cell is not None]
    assert {n.reduction for n in cells} == {settings["stem_reduction"]}  # one level, at the stem's resolution
    assert {e.op for step in g.cells["normal"].steps for e in step.edges} <= set(primitives)
    rows = [json.loads(line) for line in (Path(summary["log"])).read_text().splitlines()]
    assert all(len(a) == len(primitives) for a in rows[-1]["alphas"])
    assert_compiles(out)


def test_path_stage_takes_the_cell_of_an_existing_spec(run_cli, tmp_path):
    source = Path(__file__).resolve().parents[1] / "genotypes" / "rspnet_small.json"
    out = tmp_path / "paths_only.json"
    code, stdout, stderr = run_cli(
        "search", "--stage", "path", "--cell", str(source), *SMOKE, "--out", str(out), "--threshold", "0.3", "--json"
    )
    assert code == 0, stderr
    g = load_spec(out)
    assert g.cells["normal"] == load_spec(source).cells["normal"]
    assert g.provenance.parent_sha256 == spec_sha256(load_spec(source))
    assert "attention >= 0.3" in g.provenance.notes and "--threshold 0.3" not in g.provenance.command
    assert_compiles(out)


RESUMABLE = dict(epochs=3, samples=16)  # two steps per epoch, two architecture epochs per stage


def run_both(tmp: Path, name: str, interrupt_at=None, resume=False, every_s=1e9) -> Path:
    """A smoke search of both stages with two steps per epoch; ``interrupt_at``: (stage, epoch) after that
    epoch is saved, or (stage, epoch, step) after that step; ``every_s``: a checkpoint within an epoch after
    this much training (0: after every step)."""
    request = SearchRequest(
        stage="both",
        budget="smoke",
        config=resolve_config("smoke", RESUMABLE),
        name=name,
        out=tmp / f"{name}.json",
        run_dir=tmp / f"run_{name}",
        resume=resume,
        checkpoint_every_s=every_s,
    )

    def stop_epoch(stage, epoch):
        if (stage, epoch) == interrupt_at:
            raise KeyboardInterrupt

    def stop_step(s):
        if (s["stage"], s["epoch"], s["step"]) == interrupt_at:
            raise KeyboardInterrupt

    search(request, on_epoch_end=stop_epoch, on_step=stop_step)
    return request.out


@pytest.mark.slow  # seconds of training; the default suite keeps a faster check of the same path
def test_resume_after_an_interrupt_reaches_the_same_spec_and_the_same_seed_repeats(tmp_path, run_cli):
    straight = run_both(tmp_path, "a")
    with pytest.raises(KeyboardInterrupt):
        run_both(tmp_path, "b", interrupt_at=("cell", 2))
    with pytest.raises(KeyboardInterrupt):
        run_both(tmp_path, "b", interrupt_at=("path", 1), resume=True)
    assert not (tmp_path / "b.json").exists()  # nothing half-written
    resumed = run_both(tmp_path, "b", resume=True)
    assert architecture(resumed) == architecture(straight)

    def log(n):
        return [json.loads(line) for line in (tmp_path / f"run_{n}" / "log.jsonl").read_text().splitlines()]

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert strip(log("b")) == strip(log("a"))  # every epoch's weights replayed exactly

    again = run_both(tmp_path / "again", "a")  # the same search again: the very same file
    assert again.read_bytes() == straight.read_bytes()
    request = SearchRequest(
        stage="both",
        budget="smoke",
        config=resolve_config("smoke", RESUMABLE),
        name="d",
        out=tmp_path / "d.json",
        run_dir=tmp_path / "run_d",
        seed=1,
    )
    search(request)
    assert [json.loads(line)["alphas"] for line in (tmp_path / "run_d" / "log.jsonl").read_text().splitlines()[:1]] != [
        r["alphas"] for r in log("a")[:1]
    ]
    assert architecture_sha256(load_spec(request.out)) != architecture_sha256(load_spec(straight))


def test_an_interrupt_within_an_epoch_loses_no_step_and_resumes_to_the_same_search(tmp_path):
    """Checkpoints within an epoch (here after every step): Ctrl-C in the middle of the first epoch of
    either stage, then --resume, replays exactly what the straight search does."""
    straight = run_both(tmp_path, "a")
    with pytest.raises(KeyboardInterrupt):
        run_both(tmp_path, "b", interrupt_at=("cell", 1, 1), every_s=0)
    assert (tmp_path / "run_b" / "checkpoint-cell.pt").exists()  # the first epoch was not finished
    assert not (tmp_path / "run_b" / "log.jsonl").exists()
    with pytest.raises(KeyboardInterrupt):
        run_both(tmp_path, "b", interrupt_at=("path", 2, 3), resume=True, every_s=0)
    resumed = run_both(tmp_path, "b", resume=True, every_s=0)

    def log(n):
        rows = [json.loads(line) for line in (tmp_path / f"run_{n}" / "log.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert log("b") == log("a")
    assert architecture(resumed) == architecture(straight)


def test_a_run_folder_is_not_resumed_with_other_settings(tmp_path, run_cli):
    out = tmp_path / "x.json"
    args = ("search", "--stage", "cell", *SMOKE, "--out", str(out), "--run-dir", str(tmp_path / "run"))
    assert run_cli(*args)[0] == 0
    code, _, err = run_cli(*args, "--force", "--resume", "--epochs", "3")
    assert code == 2 and "other settings" in err and len(err.strip().splitlines()) == 1


LOADED = {"unknown data set 'imagenet'"}  # found once the data loads, after the plan's first lines


@pytest.mark.parametrize(
    "args, message",
    [
        (("--stage", "path"), "--stage path needs it"),
        (("--stage", "cell", "--cell", "genotypes/rspnet_small.json"), "--cell is for --stage path"),
        (("--stage", "sideways"), "unknown stage 'sideways'"),
        (("--budget", "huge"), "unknown budget 'huge'"),
        (("--set", "cell.wings=2"), "unknown search setting 'cell.wings'"),
        (("--set", "nonsense"), "is not KEY=VALUE"),
        (("--partial", "3"), "partial K=3 must divide channels=4"),
        (("--epochs", "1"), "warmup_epochs (1) must be below epochs (1)"),
        (("--set", "path.topk=null"), "set topk, threshold or both"),
        (("--name", "Bad-Name"), "not a lower-case identifier"),
        (("--resume",), "no search checkpoint to resume"),
        (("--data", "imagenet"), "unknown data set 'imagenet'"),
        (("--root", "no/such/folder"), "no/such/folder: no such folder"),
        (("--stage", "path", "--cell", "missing.json"), "missing.json: no such file in "),
        (("--latency-target", "-1"), "'-1' is not in the range 0 < x"),
    ],
)
def test_bad_requests_are_one_line_errors_and_write_nothing(run_cli, tmp_path, args, message):
    """Refused in one line; what the request alone shows is refused before the plan's first line."""
    out = tmp_path / "never.json"
    code, stdout, stderr = run_cli("search", *SMOKE, "--out", str(out), *args)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert message in lines[-1] and lines[-1].startswith("rspnet-zoo: error: "), stderr
    assert "Traceback" not in stderr and sum("error" in line for line in lines) == 1
    assert len(lines) == 1 or message in LOADED
    assert not out.exists()


def test_an_existing_spec_is_not_overwritten_without_force(run_cli, tmp_path):
    out = tmp_path / "taken.json"
    out.write_text("{}")
    code, _, stderr = run_cli("search", *SMOKE, "--out", str(out))
    assert code == 2 and "exists; pass --force" in stderr
    assert out.read_text() == "{}"


@pytest.mark.slow
def test_resume_after_sigkill_of_the_cli_reaches_the_same_spec(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    def command(name, *extra):
        return [
            sys.executable,
            "-m",
            "rspnet_zoo",
            "search",
            "--budget",
            "smoke",
            "--epochs",
            "6",
            "--samples",
            "16",
            "--threads",
            "1",
            "--no-progress",
            "--out",
            str(tmp_path / f"{name}.json"),
            "--run-dir",
            str(tmp_path / f"run_{name}"),
            *extra,
        ]

    env = dict(os.environ, RSPNET_ZOO_HOME=str(tmp_path / "home"))
    subprocess.run(command("straight"), check=True, env=env, capture_output=True)
    victim = subprocess.Popen(command("killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "run_killed" / "checkpoint-cell.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert checkpoint.exists() and not (tmp_path / "killed.json").exists()
    subprocess.run(command("killed", "--resume"), check=True, env=env, capture_output=True)
    assert architecture(tmp_path / "killed.json") == architecture(tmp_path / "straight.json")
