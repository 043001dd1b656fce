"""One path for a built folder (issue 25, item 5): one writer behind build, train, convert; the card's text in
one module; the cfg complete before the model is built; the spec lowered and hashed once per build."""

from __future__ import annotations

import json
from unittest import mock

import pytest
import timm
import torch
from reference_checkpoints import random_state, reference_layout
from torch import nn

import rspnet_zoo.nn.model
import rspnet_zoo.spec.plan
import rspnet_zoo.zoo.folder
import rspnet_zoo.zoo.registry
from rspnet_zoo.interop.convert import convert_checkpoint
from rspnet_zoo.nn.encoders import encoder_first_convs
from rspnet_zoo.nn.model import GenotypeNet, first_conv_names
from rspnet_zoo.spec.plan import lower
from rspnet_zoo.training.loop import save_to_zoo
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.config import CONFIG_FILE, read_folder_config
from rspnet_zoo.zoo.folder import build_folder
from rspnet_zoo.zoo.hub import FOLDER_FILES
from rspnet_zoo.zoo.registry import create_genotype_net

METRICS = dict(miou=0.5, mean_acc=0.6, fw_iou=0.7, pixel_acc=0.8, images=2, per_class_iou={"a": 0.5, "b": 0.5})


def image_readers(model: GenotypeNet, in_chans: int) -> set[str]:
    """The convs whose input is the image itself, found by running the model: every conv that sees an
    ``in_chans``-channel input on the way from the image (in a node or an encoder), before any node's output."""
    seen: set[str] = set()
    hooks = [
        m.register_forward_pre_hook(
            lambda mod, args, name=name: seen.add(name) if args[0].shape[1] == in_chans else None
        )
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and m.in_channels == in_chans
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, in_chans, 64, 64))
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_plan_names_convs_of_the_model_that_read_in_chans(name):
    genotype = SHIPPED[name]
    plan = lower(genotype, in_chans=5)
    names = first_conv_names(plan) + encoder_first_convs(genotype, plan)
    assert names and len(set(names)) == len(names)
    with torch.device("meta"):
        modules = dict(GenotypeNet(genotype, in_chans=5, plan=plan).named_modules())
    assert all(isinstance(modules[n], nn.Conv2d) and modules[n].in_channels == 5 for n in names)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n == "rspnet_small" else [pytest.mark.slow]) for n in sorted(SHIPPED)]
)
def test_the_plan_names_exactly_the_convs_that_read_the_image(name):
    plan = lower(SHIPPED[name], in_chans=5)
    assert set(first_conv_names(plan) + encoder_first_convs(SHIPPED[name], plan)) == image_readers(
        GenotypeNet(SHIPPED[name], in_chans=5, plan=plan), 5
    )


def test_the_cfg_is_complete_before_the_model_is_built_and_the_spec_lowered_once():
    genotype = SHIPPED["rspnet_small"]
    with (
        mock.patch.object(rspnet_zoo.zoo.registry, "lower", wraps=rspnet_zoo.spec.plan.lower) as lowered,
        mock.patch.object(rspnet_zoo.nn.model, "lower", wraps=rspnet_zoo.spec.plan.lower) as lowered_again,
    ):
        model = create_genotype_net(genotype.name, genotype, in_chans=1, num_classes=4)
        features = create_genotype_net(genotype.name, genotype, features_only=True)
    assert lowered.call_count == 2 and lowered_again.call_count == 0
    assert model.pretrained_cfg["first_conv"] == "nodes.0.layer.0" == features.pretrained_cfg["first_conv"]
    assert model.in_chans == 1 and model.num_classes == 4


def test_every_front_end_writes_through_the_one_writer(tmp_path, zoo_home):
    genotype = SHIPPED["rspnet_small"]
    folders = {}
    with mock.patch.object(rspnet_zoo.zoo.folder, "spec_sha256", wraps=rspnet_zoo.zoo.folder.spec_sha256) as hashed:
        folders["build"], _ = build_folder(genotype, tmp_path / "built", num_classes=2)
        assert hashed.call_count == 1  # once per build
    weights = folders["build"] / "model.safetensors"
    folders["build --weights"], _ = build_folder(genotype, tmp_path / "copied", num_classes=2, weights=weights)
    model = create_genotype_net(genotype.name, genotype, num_classes=2)
    folders["train"] = save_to_zoo(model, genotype, "mine", ["a", "b"], METRICS, data="Folder", commands=["-"])
    torch.save(random_state(reference_layout("nas_segm_arch0")), tmp_path / "ckpt.pth")
    folders["convert"], _ = convert_checkpoint("nas-segm", tmp_path / "ckpt.pth", "nas_segm_arch0", tmp_path / "conv")
    for front_end, folder in folders.items():
        assert sorted(p.name for p in folder.iterdir()) == sorted(FOLDER_FILES), front_end
        config = read_folder_config(folder / CONFIG_FILE)
        assert config.to_json() == json.loads((folder / CONFIG_FILE).read_text()), front_end
        card = (folder / "README.md").read_text()
        assert card.startswith("---\n") and f"# {config.genotype('x').name} " in card, front_end
    assert "## Trained weights `rspnet_small.mine`" in (folders["train"] / "README.md").read_text()
    assert "## Imported weights" in (folders["convert"] / "README.md").read_text()
    loaded = timm.create_model("rspnet_small.mine", pretrained=True)
    assert loaded.pretrained_cfg["label_names"] == ("a", "b")
