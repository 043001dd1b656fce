"""Nothing lost: train never clobbers an earlier run, resumes only its own settings, checks checkpoints
before using them and cleans what killed writes left; a build is replaced without a moment of no build,
concurrent writers of one name both finish, and outputs get ordinary file modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from test_train_cli import FAST, TINY
from test_train_loop import tiny_model, tiny_set

from rspnet_zoo import fsutil
from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import atomic_write_text, temp_prefix
from rspnet_zoo.training.loop import train
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.folder import build_folder
from rspnet_zoo.zoo.home import zoo_home
from rspnet_zoo.zoo.weights import read_weights

ROOT = Path(__file__).parents[1]


def one_error_line(code: int, err: str) -> str:
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def test_train_guards_its_run_folder(run_cli, zoo_home, tmp_path, camvid):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # what killed writes leave: a checkpoint's temporary file, a half-written zoo folder of this tag
    (run_dir / f"{temp_prefix('checkpoint.pt')}abc.pt").write_bytes(b"half")
    (zoo_home / f"{temp_prefix('tiny_net.t')}xyz").mkdir(parents=True)
    other = zoo_home / f"{temp_prefix('someone_else')}q"
    other.write_bytes(b"not ours")

    def train_(*extra: str):
        return run_cli("train", str(TINY), *camvid, *FAST, "--tag", "t", "--out", str(run_dir), "--json", *extra)

    code, out, err = train_("--epochs", "1")
    assert code == 0, err
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "curves.png", "history.json"]
    assert sorted(p.name for p in zoo_home.iterdir()) == [other.name, "tiny_net.t"]  # only its own leftovers
    checkpoint, weights = run_dir / "checkpoint.pt", zoo_home / "tiny_net.t" / "model.safetensors"
    saved = checkpoint.read_bytes(), weights.read_bytes()

    refusals = [
        ((), f"{run_dir}: holds an earlier train; pass --resume to continue it or --force to start over"),
        (
            ("--resume", "--batch-size", "4", "--lr", "0.1"),
            f"{checkpoint}: was made with other settings: global_batch 2 -> 4, lr 0.05 -> 0.1 "
            "(only epochs, iterations may change on resume); resume it with the same settings, "
            "or pass --force to start over",
        ),
        (("--resume", "--iterations", "1"), f"{checkpoint}: the run already did 2 steps; resuming cannot shorten it"),
    ]
    for args, message in refusals:
        assert one_error_line(*train_(*args)[::2]) == f"rspnet-zoo: error: {message}"
        assert (checkpoint.read_bytes(), weights.read_bytes()) == saved  # nothing lost

    code, out, err = train_("--resume", "--epochs", "2")  # a longer run: resuming supports it
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["resumed_from"] == 2 and resumed["steps"] == 4 and len(resumed["commands"]) == 2
    card = (zoo_home / "tiny_net.t" / "README.md").read_text()
    assert "Reproduce with these commands, in order" in card
    first, second = resumed["commands"]
    assert "--epochs 1" in first and "--epochs 2" in second and card.index(first) < card.index(second)

    code, out, err = train_("--force", "--epochs", "1")
    assert code == 0, err
    assert json.loads(out)["resumed_from"] is None and json.loads(out)["steps"] == 2


def _damaged(state: dict, damage: str) -> object:
    if damage == "foreign":
        return [1, 2, 3]
    if damage == "no optimizer":
        return {k: v for k, v in state.items() if k != "optimizer"}
    if damage == "step is text":
        return dict(state, step="4")
    model = dict(state["model"])
    if damage == "missing tensor":
        model.pop(sorted(model)[0])
    if damage == "wrong shape":
        key = next(k for k in sorted(model) if model[k].dim() == 4)
        model[key] = torch.zeros(1, 1, 1, 1)
    return dict(state, model=model)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("foreign", r"not a training checkpoint \(it holds a list\)"),
        ("no optimizer", r"not a training checkpoint of this run \('optimizer' is missing, not a dict\)"),
        ("step is text", r"'step' is a str, not an int"),
        ("missing tensor", r"does not fit this model: 1 missing, 0 unexpected, 0 mis-shaped tensors \(missing "),
        ("wrong shape", r"does not fit this model: 0 missing, 0 unexpected, 1 mis-shaped tensors \(.* has shape"),
    ],
)
def test_checkpoints_are_checked_before_use(tmp_path, damage, message):
    file = tmp_path / "c.pt"
    train(tiny_model(), tiny_set(4), iterations=1, batch_size=4, checkpoint=file)
    torch.save(_damaged(torch.load(file, weights_only=True), damage), file)
    model = tiny_model(seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ZooError, match=message) as refused:
        train(model, tiny_set(4), iterations=2, batch_size=4, checkpoint=file, resume=True)
    assert "\n" not in str(refused.value) and str(refused.value).startswith(str(file))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing of it was used


def test_outputs_get_the_modes_of_a_plain_write(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        folder, _ = build_folder(SHIPPED["rspnet_small"], tmp_path)
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert folder.stat().st_mode & 0o777 == 0o755
    assert {f.stat().st_mode & 0o777 for f in folder.iterdir()} == {0o644}
    assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600


def test_replacing_a_build_never_leaves_a_moment_without_one(tmp_path, monkeypatch):
    exchanges = []
    exchange = fsutil._exchange
    monkeypatch.setattr(fsutil, "_exchange", lambda a, b: exchanges.append(exchange(a, b)) or exchanges[-1])
    genotype = SHIPPED["rspnet_small"]
    folder, _ = build_folder(genotype, tmp_path, seed=0)
    seen, missing, stop = [0], [0], threading.Event()

    def watch():
        while not stop.is_set():
            seen[0] += 1
            missing[0] += not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for seed in (1, 2, 3):
            build_folder(genotype, tmp_path, seed=seed)
    finally:
        stop.set()
        watcher.join()
    assert exchanges == [True, True, True]  # renameat2(RENAME_EXCHANGE) on this system
    assert seen[0] > 100 and missing[0] == 0
    assert read_weights(folder / "model.safetensors")[1]["init_seed"] == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rspnet_small"]  # no old folder, no temporary


def _cli(*args: str, home: Path) -> subprocess.Popen:
    env = dict(os.environ, RSPNET_ZOO_HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "rspnet_zoo", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow  # seconds of subprocesses or training; the default suite keeps a faster check of the same path
def test_two_concurrent_builds_of_one_name_both_finish(tmp_path):
    runs = [_cli("build", str(TINY), "--seed", str(seed), "--json", home=tmp_path) for seed in (1, 2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in runs]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    assert all("Traceback" not in err for _, _, err in results)
    folder = tmp_path / "tiny_net"
    _, meta = read_weights(folder / "model.safetensors")  # whole: its hash checks out
    assert meta["init_seed"] in ("1", "2") and json.loads((folder / "config.json").read_text())["num_classes"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_net"]


@pytest.mark.slow
def test_two_concurrent_trains_of_one_run_both_finish(tmp_path, camvid):
    """The second waits for the first's lock, then starts over (--force) rather than clobbering it midway."""
    run_dir = tmp_path / "run"
    args = ("train", str(TINY), *camvid, *FAST, "--epochs", "1", "--tag", "t", "--out", str(run_dir), "--force")
    runs = [_cli(*args, "--json", "--seed", str(seed), home=tmp_path / "home") for seed in (1, 2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in runs]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    assert all("Traceback" not in err for _, _, err in results)
    steps = [json.loads(out)["steps"] for _, out, _ in results]
    assert steps == [2, 2]
    read_weights(tmp_path / "home" / "tiny_net.t" / "model.safetensors")
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "curves.png", "history.json"]


def test_an_empty_zoo_home_is_unset_not_the_working_directory(monkeypatch):
    monkeypatch.setenv("RSPNET_ZOO_HOME", "")
    assert zoo_home() == Path("~/.cache/rspnet-zoo").expanduser()


def test_a_search_removes_the_temporaries_killed_writes_left_in_its_run_folder(tmp_path):
    from rspnet_zoo.fsutil import temp_prefix
    from searchers.requests import RunFiles
    from searchers.run_folders import check_run_folder

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    leftover = run_dir / (temp_prefix("checkpoint-cell.pt") + "x1")
    leftover.write_bytes(b"half a checkpoint")
    check_run_folder(
        RunFiles("net", tmp_path / "net.json", run_dir), resume=False, force=False, settings={}, command=""
    )
    assert [p.name for p in run_dir.iterdir()] == ["run-record.json"]


@pytest.mark.parametrize(
    "state, fault",
    [
        ([1, 2], "not a search checkpoint (it holds a list)"),
        (dict(epoch=1), "not a search checkpoint of this run ('settings' is missing, not a dict)"),
        (dict(settings={}, epoch="1"), "not a search checkpoint of this run ('epoch' is a str, not an int)"),
    ],
)
def test_a_search_checkpoint_is_checked_before_a_resume_uses_it(tmp_path, state, fault):
    import torch

    from rspnet_zoo.errors import ZooError
    from searchers.rspnet.runner import CHECKPOINT_FIELDS
    from searchers.run_folders import load_resumable

    file = tmp_path / "checkpoint-cell.pt"
    torch.save(state, file)
    with pytest.raises(ZooError) as e:
        load_resumable(file, {}, CHECKPOINT_FIELDS)
    assert str(e.value) == f"{file}: {fault}"
