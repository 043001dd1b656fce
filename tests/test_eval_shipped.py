"""The shipped synthetic weights: they load through timm and reach the mIoU their model card states."""

from __future__ import annotations

import json
import re

import pytest
import timm
from safetensors import safe_open

from rspnet_zoo.data.synthetic import CLASS_NAMES
from rspnet_zoo.resources import PACKAGE_WEIGHTS
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.folder import weights_metadata

SHIPPED_WEIGHTS = ["rspnet_small", "rspnet_c"]  # <name>.synth: weights and model card in the package


def documented_miou(name: str) -> float:
    card = (PACKAGE_WEIGHTS / f"{name}.synth.md").read_text()
    return float(re.search(r"Validation split \(100 images.*?\): \*\*mIoU (\d\.\d{4})\*\*", card).group(1))


@pytest.mark.parametrize("name", SHIPPED_WEIGHTS)
def test_shipped_weights_are_small_safetensors_with_the_specs_metadata(name):
    weights = PACKAGE_WEIGHTS / f"{name}.synth.safetensors"
    assert weights.stat().st_size < 10 * 2**20
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
    expected = weights_metadata(SHIPPED[name], {}, CLASS_NAMES)
    assert {k: meta[k] for k in ("genotype", "genotype_sha256", "class_names")} == {
        k: expected[k] for k in ("genotype", "genotype_sha256", "class_names")
    }
    assert meta["weights_status"] == "trained" and meta["trained_on"] == "synthetic"
    assert round(json.loads(meta["metrics"])["miou"], 4) == documented_miou(name)  # the card rounds to 4 digits
    assert f"{name}.synth" in timm.list_pretrained(f"{name}*")
    assert timm.models.get_pretrained_cfg(name).num_classes == SHIPPED[name].defaults.num_classes


@pytest.mark.parametrize("name", SHIPPED_WEIGHTS)
def test_the_card_says_how_to_reproduce_them(name):
    card = (PACKAGE_WEIGHTS / f"{name}.synth.md").read_text()
    assert re.search(rf"rspnet-zoo train {name} --data synthetic .*--tag synth", card)
    assert 0.5 <= documented_miou(name) <= 1.0


@pytest.mark.parametrize("name", SHIPPED_WEIGHTS)
def test_eval_reaches_the_documented_miou(run_cli, name):
    code, out, err = run_cli("eval", f"{name}.synth", "--data", "synthetic", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["images"] == 100 and set(result["per_class_iou"]) == set(CLASS_NAMES)
    assert result["miou"] >= 0.5
    assert result["miou"] == pytest.approx(documented_miou(name), abs=0.005)


def test_eval_prints_a_table_for_people(run_cli):
    code, out, _ = run_cli("eval", "rspnet_small.synth", "--data", "synthetic", "--length", "4")
    assert code == 0
    assert "mIoU" in out and "background" in out and "star" in out


def test_eval_refuses_a_data_set_with_another_class_count(run_cli, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "classes.txt").write_text("a\nb\n")
    run_cli(
        "data",
        "sample",
        str(tmp_path / "images" / "x.png"),
        "--size",
        "16",
        "--mask",
        str(tmp_path / "masks" / "x.png"),
    )
    code, _, err = run_cli("eval", "rspnet_small.synth", "--data", "folder", "--root", str(tmp_path))
    assert code == 2 and "predicts 9 classes, the folder data set has 2" in err
