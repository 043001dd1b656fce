"""Untrained weights say so: every zoo weight file records trained, imported or initialised, pretrained=True
refuses initialised ones unless asked, and list, the model card and timm.list_pretrained() show it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from rspnet_zoo.errors import WeightsError
from rspnet_zoo.resources import PACKAGE_WEIGHTS
from rspnet_zoo.training.loop import save_to_zoo
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.folder import build_folder
from rspnet_zoo.zoo.registry import ALLOW_UNTRAINED_ENV, create_genotype_net
from rspnet_zoo.zoo.weights import describe_status, read_metadata, read_weights, save_weights

SMALL = SHIPPED["rspnet_small"]
SYNTH = PACKAGE_WEIGHTS / "rspnet_small.synth.safetensors"
SPEC = str(Path(__file__).parents[1] / "genotypes" / "rspnet_small.json")
REFUSAL = r"initialised \(seed 5\), never trained; train them \(`rspnet-zoo train rspnet_small`\).*--weights FILE"


def metrics_of(classes: list[str]) -> dict:
    return dict(miou=0.25, mean_acc=0.5, fw_iou=0.4, pixel_acc=0.6, images=3, per_class_iou={c: 0.25 for c in classes})


def test_build_records_initialised_weights_and_pretrained_refuses_them(zoo_home, monkeypatch):
    folder, info = build_folder(SMALL, zoo_home, seed=5)
    meta = read_metadata(folder / "model.safetensors")
    assert (meta["weights_status"], meta["init_seed"]) == ("initialised", "5")
    assert info["weights"] == {"weights_status": "initialised", "init_seed": "5"}
    assert "| weights | initialised (seed 5), never trained |" in (folder / "README.md").read_text()
    with pytest.raises(WeightsError, match=REFUSAL) as refused:
        timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert "\n" not in str(refused.value) and "allow_untrained=True" in str(refused.value)
    # the bare name loads its default trained tag, as in timm: the shipped rspnet_small.synth, not the build
    assert timm.create_model("rspnet_small", pretrained=True).pretrained_cfg["file"].endswith(".synth.safetensors")
    assert timm.create_model(f"local-dir:{folder}", pretrained=False) is not None  # a skeleton is fine
    # asked for explicitly: the same tensors load
    model = timm.create_model("rspnet_small", pretrained=True, allow_untrained=True)
    state, _ = read_weights(folder / "model.safetensors")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    monkeypatch.setenv(ALLOW_UNTRAINED_ENV, "1")
    assert timm.create_model(f"local-dir:{folder}", pretrained=True).num_classes == 19
    monkeypatch.setenv(ALLOW_UNTRAINED_ENV, "0")
    with pytest.raises(WeightsError, match=REFUSAL):
        timm.create_model(f"local-dir:{folder}", pretrained=True)


def test_predict_and_eval_refuse_a_build_in_one_line(run_cli, zoo_home, tmp_path):
    build_folder(SMALL, zoo_home, seed=5)
    image = tmp_path / "scene.png"
    assert run_cli("data", "sample", str(image), "--size", "32x32")[0] == 0
    built = str(zoo_home / "rspnet_small")
    for args in (("predict", built, str(image), "--out", str(tmp_path / "pred")), ("eval", built)):
        code, out, err = run_cli(*args)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert "never trained" in err and "rspnet-zoo train rspnet_small" in err and "Traceback" not in err
    assert not (tmp_path / "pred").exists()


def test_trained_and_imported_weights_say_so_and_copies_keep_it(zoo_home, tmp_path):
    net = create_genotype_net("rspnet_small", SMALL, num_classes=3)
    classes = ["a", "b", "c"]
    folder = save_to_zoo(net, SMALL, "mine", classes, metrics_of(classes), data="folder", commands=["rspnet-zoo …"])
    meta = read_metadata(folder / "model.safetensors")
    assert (meta["weights_status"], meta["trained_on"], json.loads(meta["metrics"])["miou"]) == (
        "trained",
        "folder",
        0.25,
    )
    assert "| weights | trained on folder (val mIoU 0.2500) |" in (folder / "README.md").read_text()
    assert timm.create_model("rspnet_small.mine", pretrained=True).num_classes == 3

    # build --weights: a zoo file keeps its own status, a plain safetensors file counts as imported from it
    copied, _ = build_folder(SMALL, tmp_path / "copy", num_classes=9, weights=SYNTH)
    assert read_metadata(copied / "model.safetensors")["weights_status"] == "trained"
    plain = tmp_path / "plain.safetensors"
    state, _ = read_weights(SYNTH)
    save_weights(state, plain, {})
    imported, _ = build_folder(SMALL, tmp_path / "imp", num_classes=9, weights=plain)
    meta = read_metadata(imported / "model.safetensors")
    assert (meta["weights_status"], meta["source"]) == ("imported", str(plain))
    assert timm.create_model(f"local-dir:{imported}", pretrained=True).num_classes == 9


def test_list_shows_the_status_of_builds_and_tags(run_cli, zoo_home, monkeypatch):
    from rspnet_zoo.zoo import stats

    monkeypatch.setattr(stats, "cached_spec_stats", lambda g: dict(parameters=1, flops=1))  # sizes: not tested here
    code, out, _ = run_cli("build", SPEC, "--seed", "2", "--json")
    assert code == 0 and json.loads(out)["weights"]["weights_status"] == "initialised"
    code, out, _ = run_cli("build", SPEC, "--seed", "2")
    assert "never trained" in out and "allow_untrained=True" in out
    code, out, _ = run_cli("list", "--json")
    row = {r["name"]: r for r in json.loads(out)}["rspnet_small"]
    assert row["weights"] == "initialised" and row["tags"] == {"synth": "trained"}
    code, out, _ = run_cli("list")
    line = next(x for x in out.splitlines() if x.startswith("rspnet_small "))
    assert line.split()[2] == "init"
    shipped = describe_status(read_metadata(PACKAGE_WEIGHTS / "rspnet_small.synth.safetensors"))
    assert shipped.startswith("trained on synthetic (val mIoU ")
    assert any(x.split(maxsplit=1) == ["rspnet_small.synth", shipped] for x in out.splitlines())


def listed(home: Path) -> list[str]:
    """timm.list_pretrained() as a fresh process sees it once the zoo home is read (``refresh_tags``; building
    any zoo name does it too, while ``import timm`` reads only package data)."""
    code = (
        "import json, timm, rspnet_zoo; rspnet_zoo.refresh_tags(); "
        "print(json.dumps(timm.list_pretrained('rspnet_small*')))"
    )
    env = dict(os.environ, RSPNET_ZOO_HOME=str(home), PYTHONPATH=str(Path(__file__).parents[1]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout)


@pytest.mark.slow  # seconds of subprocesses or training; the default suite keeps a faster check of the same path
def test_list_pretrained_lists_trained_and_imported_never_initialised(zoo_home, tmp_path):
    build_folder(SMALL, zoo_home, seed=1)  # initialised, untagged
    build_folder(SMALL, zoo_home, seed=1, folder_name="rspnet_small.fresh")  # initialised, tagged
    net = create_genotype_net("rspnet_small", SMALL, num_classes=3)
    save_to_zoo(net, SMALL, "mine", ["a", "b", "c"], metrics_of(["a", "b", "c"]), data="folder", commands=["x"])
    plain = tmp_path / "plain.safetensors"
    save_weights(read_weights(SYNTH)[0], plain, {})
    build_folder(SMALL, zoo_home, num_classes=9, weights=plain, folder_name="rspnet_small.imp")  # imported
    assert listed(zoo_home) == ["rspnet_small.imp", "rspnet_small.mine", "rspnet_small.synth"]
