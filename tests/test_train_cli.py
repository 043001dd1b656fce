"""rspnet-zoo train: checkpoints, --resume, the trained folder in the zoo, and its errors.

The runs train on a tiny CamVid-layout folder, so the validation pass at the end stays small.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm

TINY = Path(__file__).parent / "data" / "tiny_net.json"
FAST = ("--crop", "16x24", "--batch-size", "2", "--lr", "0.05")


def test_train_then_resume_then_load_and_evaluate(run_cli, zoo_home, tmp_path, camvid):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        "train", str(TINY), *camvid, *FAST, "--epochs", "1", "--tag", "t", "--out", str(run_dir), "--json"
    )
    assert code == 0, err
    first = json.loads(out)
    assert first["steps"] == 2 and first["resumed_from"] is None and (run_dir / "checkpoint.pt").is_file()
    folder = Path(first["folder"])
    assert folder == zoo_home / "tiny_net.t"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]

    code, out, err = run_cli(
        "train", str(TINY), *camvid, *FAST, "--epochs", "3", "--tag", "t", "--out", str(run_dir), "--resume", "--json"
    )
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["resumed_from"] == 2 and resumed["steps"] == 6
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert json.loads((run_dir / "history.json").read_text())["history"] == resumed["history"]
    # every epoch is validated; the last epoch's validation is the reported metrics; both curves are drawn
    assert all(0 <= h["val_miou"] <= 1 for h in resumed["history"])
    assert resumed["history"][-1]["val_miou"] == resumed["metrics"]["miou"]
    assert resumed["curves"] == str(run_dir / "curves.png") and (run_dir / "curves.png").stat().st_size > 0

    card = (folder / "README.md").read_text()
    assert f"mIoU {resumed['metrics']['miou']:.4f}" in card
    assert f"rspnet-zoo train {TINY} --data camvid --root " in card
    assert "--epochs 3" in card and "--tag t" in card

    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert model.num_classes == 11 and model.pretrained_cfg["label_names"][0] == "sky"
    code, out, err = run_cli("eval", str(folder), *camvid, "--json")
    assert code == 0, err
    assert json.loads(out)["miou"] == pytest.approx(resumed["metrics"]["miou"])


def test_resume_without_a_checkpoint(run_cli, tmp_path):
    code, out, err = run_cli("train", str(TINY), *FAST, "--resume", "--out", str(tmp_path / "empty"))
    assert code == 2 and out == ""
    assert err.strip() == f"rspnet-zoo: error: {tmp_path / 'empty'}: no train checkpoint to resume"


def test_bad_flags_are_one_line(run_cli, tmp_path):
    for args, expected in (
        (("--crop", "12x"), "'12x' is not a size"),
        (("--tag", "Bad-Tag"), "'Bad-Tag' is not a tag"),
        (("--data", "kitti"), "unknown data set 'kitti'"),
        (("--data", "camvid"), "needs a root folder"),
        (("--length", "4", "--data", "camvid", "--root", str(tmp_path)), "apply to the synthetic data set only"),
        (("--device", "gpu7"), "'gpu7' is not a torch device"),
    ):
        code, out, err = run_cli("train", str(TINY), *args)
        assert code == 2 and out == "", args
        assert len(err.strip().splitlines()) == 1 and expected in err, (args, err)
    assert not any(p.name != "zoo-home" for p in tmp_path.iterdir())


def test_training_on_synthetic_data_reports_for_people(run_cli, tmp_path, zoo_home):
    code, out, err = run_cli(
        "train",
        str(TINY),
        "--crop",
        "32",
        "--length",
        "4",
        "--batch-size",
        "4",
        "--iterations",
        "1",
        "--out",
        str(tmp_path / "run"),
    )
    assert code == 0, err
    assert "mIoU" in out and "background" in out and "tiny_net.synthetic" in out  # default tag: the data set
    assert f"run folder -> {tmp_path / 'run'}" in " ".join(out.split())  # where checkpoint and curves went
    config = json.loads((zoo_home / "tiny_net.synthetic" / "config.json").read_text())
    assert config["num_classes"] == 9 and config["pretrained_cfg"]["label_names"][-1] == "bar"


def test_training_a_classifier_spec_is_one_line(run_cli):
    """A DARTS ImageNet/CIFAR spec classifies whole images; train says so instead of failing in the loss."""
    code, out, err = run_cli("train", "darts_v2_cifar", "--iterations", "1", "--batch-size", "2", "--length", "2")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "image classifier" in err and "Traceback" not in err
