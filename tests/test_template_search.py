"""The template search: PPO learns a toy reward, a smoke search emits a spec that trains, repeated strings
cost nothing, and an interrupted search resumes to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rspnet_zoo.data import build_dataset
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.spec.io import load_spec
from rspnet_zoo.training.loop import train
from searchers.template.budgets import TEMPLATE_BUDGETS
from searchers.template.controller import PPO, Controller
from searchers.template.search import CHECKPOINT, SAMPLES, TemplateSearch, TemplateSearchRequest, search
from searchers.template.space import TemplateSpace

PPO_STEPS = 150  # the toy reward is learned well within this many updates of 16 strings


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    pass


def test_ppo_learns_to_prefer_the_best_string_of_a_toy_reward():
    space = TemplateSpace(templates=2, blocks=4)
    torch.manual_seed(4)
    target = torch.tensor(space.sample(torch.Generator().manual_seed(104)))
    controller = Controller(space.choices(), hidden=32)  # every toy string is allowed: no mask needed
    ppo = PPO(controller, lr=5e-3, entropy_weight=0.01)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        before = float(controller(target[None])[1])
    for _ in range(PPO_STEPS):
        with torch.no_grad():
            actions, logp, _ = controller(batch=16, generator=generator)
        ppo.update(actions, (actions == target).float().mean(1), logp)  # reward: share of positions right
        with torch.no_grad():
            greedy = controller(greedy=True)[0][0]
        if torch.equal(greedy, target):
            break
    assert torch.equal(greedy, target), f"not learned in {PPO_STEPS} updates"
    with torch.no_grad():
        after = float(controller(target[None])[1])
    assert after > before + 10  # log-probability of the best string, up by more than e^10


def test_refused_choices_are_never_sampled_and_score_zero():
    refuse_1_after_0 = lambda t, prefix: (True, False, True) if t == 1 and prefix[0] == 0 else None  # noqa: E731
    controller = Controller([2, 3], hidden=8, mask=refuse_1_after_0)
    actions, _, _ = controller(batch=200, generator=torch.Generator().manual_seed(0))
    assert not ((actions[:, 0] == 0) & (actions[:, 1] == 1)).any()
    with torch.no_grad():
        every = torch.tensor([[a, b] for a in range(2) for b in range(3)])
        p = controller(every)[1].exp()
    assert float(p[1]) == 0.0 and float(p.sum()) == pytest.approx(1.0)


def request_for(tmp_path: Path, **kw) -> TemplateSearchRequest:
    options = dict(
        budget="smoke",
        config=TEMPLATE_BUDGETS["smoke"],
        name="template_smoke",
        out=tmp_path / "template_smoke.json",
        run_dir=tmp_path / "run",
    )
    return TemplateSearchRequest(**{**options, **kw})


def test_smoke_search_emits_a_spec_that_validates_builds_and_trains(tmp_path, run_cli):
    out = tmp_path / "found.json"
    code, stdout, err = run_cli(
        "search", "template", "--budget", "smoke", "--out", str(out), "--run-dir", str(tmp_path / "run"), "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(stdout)
    spec = load_spec(out)
    assert summary["samples"] == TEMPLATE_BUDGETS["smoke"].architectures
    assert spec.provenance.stage == "template" and spec.provenance.budget == "smoke"
    assert spec.provenance.command.startswith("rspnet-zoo search template --budget smoke")
    assert spec.head.type == "concat" and any(n.template is not None for n in spec.network.nodes)
    rows = [json.loads(line) for line in (tmp_path / "run" / SAMPLES).read_text().splitlines()]
    best = max(rows, key=lambda r: r["reward"])
    assert summary["best"]["reward"] == best["reward"]
    # the smallest budget shows the method at work: the samples differ, and one is better than the rest
    others = [r["reward"] for r in rows if r["config"] != best["config"]]
    assert len({r["reward"] for r in rows}) > 1 and best["reward"] > max(others)
    assert best["config"] in spec.provenance.notes
    for png in ("rewards.png", "downsampling.png", "network.png"):
        assert (tmp_path / "run" / png).stat().st_size > 0
    assert best["config"] in (tmp_path / "run" / "best.md").read_text()
    model = GenotypeNet(spec)
    data = build_dataset("synthetic", "train", crop=(32, 32), train=True, length=8)
    result = train(model, data, iterations=3, batch_size=4, lr=0.01)
    assert result.steps == 3 and all(torch.isfinite(torch.tensor(result.losses)))


@pytest.mark.slow  # seconds of training; the default suite keeps a faster check of the same path
def test_a_repeated_string_is_taken_from_the_cache(tmp_path, monkeypatch):
    space = TemplateSpace.of(TEMPLATE_BUDGETS["smoke"])
    a, b = (space.sample(torch.Generator().manual_seed(s)) for s in (1, 2))
    strings = iter([[a, a], [a, b]])

    def sample_batch(self, batch, count):
        self.pending = dict(actions=next(strings), logp=[0.0, 0.0], batch=batch)

    monkeypatch.setattr(TemplateSearch, "sample_batch", sample_batch)
    summary = search(request_for(tmp_path))
    rows = [json.loads(line) for line in (tmp_path / "run" / SAMPLES).read_text().splitlines()]
    rows.sort(key=lambda r: (r["batch"], r["slot"]))  # the log is in the order samples finished
    assert [r["cached"] for r in rows] == [False, True, True, False]
    assert summary["evaluated"] == 2
    assert rows[1]["reward"] == rows[0]["reward"] == rows[2]["reward"]


@pytest.mark.slow  # seconds of training; the default suite keeps a faster check of the same path
def test_an_interrupted_search_resumes_to_the_same_samples(tmp_path):
    whole = search(request_for(tmp_path / "whole"))

    def stop_after_two(row, total):
        if row["index"] == 1:
            raise KeyboardInterrupt

    cut = request_for(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        search(cut, on_sample=stop_after_two)
    assert len(TemplateSearch.rows_in(cut.run_dir)) == 2
    resumed = search(request_for(tmp_path / "cut", resume=True))
    rows = {k: TemplateSearch.rows_in(tmp_path / k / "run") for k in ("whole", "cut")}
    key = ["config", "reward", "cached", "batch"]
    assert [[r[k] for k in key] for r in rows["cut"]] == [[r[k] for k in key] for r in rows["whole"]]
    whole_spec, cut_spec = (load_spec(tmp_path / k / "template_smoke.json") for k in ("whole", "cut"))
    assert cut_spec.model_dump(exclude={"provenance"}) == whole_spec.model_dump(exclude={"provenance"})
    assert resumed["best"] == whole["best"]


@pytest.mark.slow
def test_a_killed_search_with_workers_resumes_losing_only_samples_in_flight(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "rspnet_zoo", "search", "--method", "template", "--budget", "smoke"]
    command += ["--set", "architectures=8", "--workers", "2", "--run-dir", str(run), "--out", str(tmp_path / "s.json")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(command + ["--no-progress"], env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not ((run / SAMPLES).exists() and (run / SAMPLES).read_text()):
        time.sleep(0.1)  # until the first sample is recorded
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = TemplateSearch.rows_in(run)
    assert 1 <= len(before) < 8
    done = subprocess.run(command + ["--resume", "--no-progress"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = TemplateSearch.rows_in(run)
    assert len(after) == 8
    assert after[: len(before)] == before
    assert (run / CHECKPOINT).exists()


@pytest.mark.slow  # seconds of training; the default suite keeps a faster check of the same path
def test_stem_weights_and_a_latency_target_reach_every_sample(tmp_path, run_cli, monkeypatch):
    """Each sample's latency is a fixed 2 ms (the search's own measurement replaced), so the reward's cut
    is checked exactly and rests on no clock of this shared machine."""
    import timm
    from safetensors.torch import save_file

    from searchers.template import evaluate as template_eval

    measured = []
    monkeypatch.setattr(template_eval.Evaluator, "latency_ms", lambda self, model: measured.append(model) or 2.0)

    arch0 = timm.create_model("nas_segm_arch0")  # a built nas-segm model holds the stem as nodes.0-6
    weights = tmp_path / "arch0.safetensors"
    save_file({k: v.contiguous() for k, v in arch0.state_dict().items()}, str(weights))
    run = tmp_path / "run"
    code, stdout, err = run_cli(
        "search", "--method", "template", "--budget", "smoke", "--out", str(tmp_path / "s.json"), "--run-dir", str(run),
        "--stem-weights", str(weights), "--latency-target", "0.001", "--set", "end_to_end_epochs=1", "--json",
    )  # fmt: skip
    assert code == 0, err
    stem = torch.load(run / "stem.pt", weights_only=True)
    assert set(stem) == {k for k in arch0.state_dict() if k.split(".")[1] in map(str, range(7))}
    assert all(torch.equal(v, arch0.state_dict()[k]) for k, v in stem.items())
    rows = TemplateSearch.rows_in(run)
    # 2 ms is above the 0.001 ms target, so every reward is cut by (latency / target) ** -0.07
    assert len(measured) == len(rows) and all(r["latency_ms"] == 2.0 for r in rows)
    assert all(r["reward"] == pytest.approx(r["accuracy_reward"] * (r["latency_ms"] / 0.001) ** -0.07) for r in rows)
    assert "MobileNet-v2 blocks from" in load_spec(tmp_path / "s.json").provenance.notes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "template", "--layers", "3"], "No such option: --layers"),  # each method has its own options
        (["--workers", "2"], "No such option: --workers"),
        (["--method", "evolution"], "unknown search method 'evolution' (choose rspnet or template)"),
        (["--method", "template", "--stem-weights", "nowhere.safetensors"], "nowhere.safetensors: no such stem"),
        (["--method", "template", "--set", "blocks=0"], "template search setting blocks"),
        (["--method", "template", "--set", "epochs=3"], "unknown template search setting 'epochs'"),
    ],
)
def test_bad_template_search_options_are_one_line_and_exit_2(tmp_path, run_cli, args, message):
    code, out, err = run_cli("search", "--budget", "smoke", "--out", str(tmp_path / "s.json"), *args)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.json").exists()


def test_stem_weights_without_the_stem_are_refused(tmp_path, run_cli):
    from safetensors.torch import save_file

    weights = tmp_path / "other.safetensors"
    save_file({"nodes.0.layer.conv.weight": torch.zeros(1)}, str(weights))
    code, _, err = run_cli(
        "search", "--method", "template", "--budget", "smoke", "--out", str(tmp_path / "s.json"),
        "--run-dir", str(tmp_path / "run"), "--stem-weights", str(weights),
    )  # fmt: skip
    last = err.strip().splitlines()[-1]  # refused once the stem is read, after the plan's first lines
    assert code == 2 and str(weights) in last and "stem weight" in last and "Traceback" not in err
    assert not (tmp_path / "s.json").exists()
