"""rspnet-zoo convert on checkpoints laid out exactly as the 11 published reference networks save them.

Each one converts, loads through timm, and goes back with ``convert --to`` bit for bit, in the
reference's own key order; converting that file again gives the same safetensors.
"""

from __future__ import annotations

import json
import math

import pytest
import timm
import torch
from reference_checkpoints import random_state, reference_layout, save_published
from safetensors.torch import load_file
from timm.data import resolve_data_config

import rspnet_zoo  # noqa: F401  (registers the zoo)
from rspnet_zoo.interop.conversions import IMAGENET_MEAN
from rspnet_zoo.interop.conversions.darts import CIFAR_MEAN

DEFAULT = ["darts_v2_cifar", "autodeeplab_s", "nas_segm_arch0"]  # one network per family
SLOW = [
    "darts_v1_cifar",
    "pc_darts_cifar",
    "darts_v1_imagenet",
    "darts_v2_imagenet",
    "pc_darts_imagenet",
    "autodeeplab_m",
    "autodeeplab_l",
    "nas_segm_arch1",
]
NETWORKS = DEFAULT + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW]


# What timm's resolve_data_config must give for the converted folder (mean, crop_pct).
FACTS = {
    "darts": (CIFAR_MEAN, 1.0),
    "darts_imagenet": (IMAGENET_MEAN, 0.875),  # Resize(256) + CenterCrop(224)
    "autodeeplab": (IMAGENET_MEAN, 1.0),
    "nas-segm": (IMAGENET_MEAN, 1.0),
}


def reconverted(layout, exported, folder):
    """What converting the exported file gives, without writing another folder."""
    from rspnet_zoo.interop.conversions import families
    from rspnet_zoo.interop.convert import read_checkpoint, to_zoo

    model = timm.create_model(f"local-dir:{folder}", pretrained=False)
    aux = model.has_aux
    state, _ = to_zoo(
        families()[layout.family].layout(model.genotype, aux), model.state_dict(), read_checkpoint(exported), "x"
    )
    return state


@pytest.mark.parametrize("name", NETWORKS)
def test_published_layout_round_trip(name, tmp_path, run_cli):
    layout = reference_layout(name)
    reference = random_state(layout)
    checkpoint = save_published(layout, reference, tmp_path)

    code, out, err = run_cli(
        "convert", layout.family, str(checkpoint), "--spec", name, "--out", str(tmp_path), "--json"
    )
    assert code == 0, err
    info = json.loads(out)
    distinct = len(layout.rows) - len(layout.aliases)
    assert info["tensors"] == distinct  # every reference tensor used once (aliases are the same tensor)
    trainable = sum(math.prod(r.shape) for r in layout.rows if r.kind == "param" and r.key not in layout.aliases)
    assert info["parameters"] == info["reference_parameters"] == trainable
    folder = tmp_path / name
    card = (folder / "README.md").read_text()
    assert info["source_sha256"] in card and "imported" in card and info["mapping_version"] in card

    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    ours = model.state_dict()
    psum = [r.key for r in layout.rows if r.key.endswith((".a", ".b"))]  # nas-segm: one (2, C) tensor of ours
    assert len(ours) == distinct - len(psum) // 2
    assert model.has_aux == any(k.startswith("auxiliary_head.") for k in reference)
    mean, crop_pct = FACTS["darts_imagenet" if "imagenet" in name else layout.family]
    config = resolve_data_config({}, model=model)
    assert tuple(config["mean"]) == pytest.approx(mean) and config["crop_pct"] == crop_pct
    assert all(note in card for note in model.pretrained_cfg["notes"])

    exported = tmp_path / f"{name}.back.pth"
    code, _, err = run_cli("convert", "--to", layout.family, str(folder), "--out", str(exported))
    assert code == 0, err
    saved = torch.load(exported, weights_only=True)
    back = saved["state_dict"] if layout.top_level else saved
    assert list(back) == [r.key for r in layout.rows]  # the reference's own order, aliases included
    for row in layout.rows:
        assert back[row.key].dtype == row.dtype and torch.equal(back[row.key], reference[row.key]), row.key

    again = reconverted(layout, exported, folder)
    first = load_file(folder / "model.safetensors")
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)

    if layout.aliases:  # safetensors will not hold one tensor twice: a flat export writes it once
        flat = tmp_path / "flat.safetensors"
        assert run_cli("convert", "--to", layout.family, str(folder), "--out", str(flat))[0] == 0
        assert len(load_file(flat)) == distinct
        again = reconverted(layout, flat, folder)
        assert all(torch.equal(first[k], again[k]) for k in first)


def test_nas_segm_logits_stay_at_a_quarter(tmp_path, run_cli):
    layout = reference_layout("nas_segm_arch1")
    checkpoint = save_published(layout, random_state(layout), tmp_path)
    assert run_cli("convert", "nas-segm", str(checkpoint), "--spec", "nas_segm_arch1", "--out", str(tmp_path))[0] == 0
    model = timm.create_model(f"local-dir:{tmp_path / 'nas_segm_arch1'}", pretrained=True).eval()
    assert model(torch.zeros(1, 3, 64, 96)).shape == (1, 19, 16, 24)
    assert "Logits at 1/4 of the input" in (tmp_path / "nas_segm_arch1" / "README.md").read_text()


def test_legacy_checkpoint_without_num_batches_tracked(tmp_path, run_cli):
    """The released DARTS files come from PyTorch 0.3.1: old pickle format, no num_batches_tracked."""
    layout = reference_layout("nas_segm_arch0")
    reference = {k: v for k, v in random_state(layout).items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(reference, path, _use_new_zipfile_serialization=False)
    code, out, err = run_cli(
        "convert", "nas-segm", str(path), "--spec", "nas_segm_arch0", "--out", str(tmp_path), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["legacy_bn"] is True
    weights = load_file(tmp_path / "nas_segm_arch0" / "model.safetensors")
    counters = [v for k, v in weights.items() if k.endswith("num_batches_tracked")]
    assert len(counters) == sum(k.endswith("running_mean") for k in reference) and all(int(c) == 0 for c in counters)
    assert torch.equal(weights["classifier.weight"], reference["decoder.conv_clf.weight"])
    assert "set to 0" in (tmp_path / "nas_segm_arch0" / "README.md").read_text()


def test_tag_names_the_zoo_folder(tmp_path, run_cli, zoo_home):
    """--tag writes <spec>.<tag> into the zoo home; the tag loads by name and exports back, auxiliary head included."""
    layout = reference_layout("darts_v2_cifar")
    reference = random_state(layout)
    checkpoint = save_published(layout, reference, tmp_path)
    code, _, err = run_cli("convert", "darts", str(checkpoint), "--spec", "darts_v2_cifar", "--tag", "published")
    assert code == 0, err
    assert (zoo_home / "darts_v2_cifar.published" / "model.safetensors").is_file()
    model = timm.create_model("darts_v2_cifar.published", pretrained=True, aux_head=True)
    assert torch.equal(model.aux_head.classifier.bias, reference["auxiliary_head.classifier.bias"])
    exported = tmp_path / "back.pt"
    code, _, err = run_cli("convert", "--to", "darts", "darts_v2_cifar.published", "--out", str(exported))
    assert code == 0, err
    back = torch.load(exported, weights_only=True)
    assert list(back) == list(reference) and all(torch.equal(back[k], reference[k]) for k in reference)
