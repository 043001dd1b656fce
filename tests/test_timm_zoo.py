"""The timm contract: registry, built folders, pretrained loading, overrides, feature extraction."""

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from timm.models import get_model_traits

import rspnet_zoo
from rspnet_zoo.errors import WeightsError, ZooError
from rspnet_zoo.spec.io import dump_spec, load_spec, spec_sha256
from rspnet_zoo.zoo.folder import build_folder
from rspnet_zoo.zoo.stats import spec_stats

GENOTYPES = Path(__file__).parents[1] / "genotypes"
X = torch.randn(1, 3, 72, 100)


def assert_same_weights(model, file):
    saved = load_file(str(file))
    state = model.state_dict()
    assert saved.keys() == state.keys()
    for k, v in saved.items():
        assert torch.equal(state[k], v), k


def test_import_registers_every_shipped_spec():
    names = {p.stem for p in GENOTYPES.glob("*.json")}
    assert names <= set(timm.list_models())
    assert {"rspnet_small", "rspnet_c"} <= names
    assert timm.models.get_pretrained_cfg("rspnet_small").num_classes == 19


@pytest.fixture(autouse=True)
def allow_untrained(monkeypatch):
    """These tests check how built folders load; a build's weights are initialised, which pretrained=True
    refuses unless asked (tests/test_weight_status.py)."""
    monkeypatch.setenv("RSPNET_ZOO_ALLOW_UNTRAINED", "1")


@pytest.fixture
def built_small(zoo_home):
    folder, info = build_folder(load_spec(GENOTYPES / "rspnet_small.json"), zoo_home, seed=3)
    return folder


def test_build_writes_a_self_describing_folder(built_small):
    assert sorted(p.name for p in built_small.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((built_small / "config.json").read_text())
    genotype = load_spec(GENOTYPES / "rspnet_small.json")
    assert config["architecture"] == "rspnet_small"
    assert config["num_classes"] == 19 and config["num_features"] == genotype.head.channels
    assert config["model_args"]["genotype"] == json.loads(dump_spec(genotype))
    with safe_open(str(built_small / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["genotype_sha256"] == spec_sha256(genotype)
    assert meta["genotype"] == dump_spec(genotype)
    assert meta["format_version"] == "1" and meta["rspnet_zoo_version"] == rspnet_zoo.__version__
    card = (built_small / "README.md").read_text()
    stats = spec_stats(genotype)
    assert spec_sha256(genotype) in card
    assert f"| parameters | {stats['parameters']:,} |" in card
    assert f"| FLOPs at 1x3x512x1024 | {stats['flops'] / 1e9:.2f} G" in card
    assert "(B, 19, H, W) at the input resolution" in card
    assert not [p for p in built_small.parent.iterdir() if p.name.startswith(".")]


def test_local_dir_rebuilds_bit_identical(built_small):
    model = timm.create_model(f"local-dir:{built_small}", pretrained=True).eval()
    assert_same_weights(model, built_small / "model.safetensors")
    again = timm.create_model(f"local-dir:{built_small}", pretrained=True).eval()
    assert torch.equal(model(X), again(X))


def test_registered_name_loads_built_weights_bit_exact(built_small):
    model = timm.create_model("rspnet_small", pretrained=True).eval()
    assert_same_weights(model, built_small / "model.safetensors")
    local = timm.create_model(f"local-dir:{built_small}", pretrained=True).eval()
    assert torch.equal(model(X), local(X))


def test_num_classes_and_in_chans_overrides_on_pretrained(built_small):
    five = timm.create_model("rspnet_small", pretrained=True, num_classes=5).eval()
    assert five(X).shape == (1, 5, 72, 100)
    reference = load_file(str(built_small / "model.safetensors"))
    state = five.state_dict()
    kept = [k for k in reference if not k.startswith("classifier.")]
    assert kept and all(torch.equal(state[k], reference[k]) for k in kept)  # all but the classifier
    gray = timm.create_model("rspnet_small", pretrained=True, in_chans=1).eval()
    assert gray(torch.randn(1, 1, 64, 64)).shape == (1, 19, 64, 64)
    [first_conv] = get_model_traits(gray)["first_conv"]  # the conv that reads the image
    stem = gray.state_dict()[f"{first_conv}.weight"]
    assert stem.shape[1] == 1
    torch.testing.assert_close(stem[:, 0], reference[f"{first_conv}.weight"].sum(dim=1))


def test_missing_weights_say_which_command_makes_them():
    """A name without trained tags: the hint is a command that works from any folder."""
    with pytest.raises(WeightsError, match=r"run `rspnet-zoo build rspnet_searched`"):
        timm.create_model("rspnet_searched", pretrained=True)


def test_a_bare_name_with_pretrained_loads_its_default_trained_tag_on_a_fresh_install(zoo_home):
    """As in timm: rspnet_small -> rspnet_small.synth while that is its only trained tag."""
    bare = timm.create_model("rspnet_small", pretrained=True)
    tagged = timm.create_model("rspnet_small.synth", pretrained=True)
    assert bare.num_classes == tagged.num_classes == 9
    assert all(torch.equal(a, b) for a, b in zip(bare.state_dict().values(), tagged.state_dict().values()))
    assert timm.create_model("rspnet_small", pretrained=True, num_classes=5, in_chans=1).num_classes == 5


def test_weights_of_another_spec_are_refused(zoo_home):
    other = load_spec(GENOTYPES / "rspnet_c.json")
    folder, _ = build_folder(other, zoo_home)
    (zoo_home / "rspnet_small").mkdir()
    (folder / "model.safetensors").rename(zoo_home / "rspnet_small" / "model.safetensors")
    with pytest.raises(WeightsError, match="rebuild it"):
        timm.create_model("rspnet_small", pretrained=True)


def test_unregistered_spec_round_trips_through_local_dir(tmp_path):
    doc = json.loads((GENOTYPES / "rspnet_small.json").read_text())
    doc["name"] = "my_private_net"
    doc["head"]["channels"] = 32
    spec = tmp_path / "my_private_net.json"
    spec.write_text(json.dumps(doc))
    genotype = load_spec(spec)
    folder, _ = build_folder(genotype, tmp_path / "out", num_classes=7)
    assert json.loads((folder / "config.json").read_text())["architecture"] == "rspnet"
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert model.genotype == genotype and model.num_classes == 7
    assert_same_weights(model, folder / "model.safetensors")


def test_building_leaves_the_callers_random_state_alone(tmp_path):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    build_folder(rspnet_zoo.SHIPPED["rspnet_small"], tmp_path, seed=7)
    assert torch.equal(torch.get_rng_state(), before)


def test_build_with_weights_file(tmp_path, zoo_home, built_small):
    folder, _ = build_folder(
        load_spec(GENOTYPES / "rspnet_small.json"), tmp_path / "copy", weights=built_small / "model.safetensors"
    )
    assert_same_weights(timm.create_model(f"local-dir:{folder}", pretrained=True), built_small / "model.safetensors")
    wrong = tmp_path / "wrong.safetensors"
    save_file({"x": torch.zeros(1)}, str(wrong))
    with pytest.raises(ZooError, match=r"does not match the spec: \d+ missing, 1 unexpected"):
        build_folder(load_spec(GENOTYPES / "rspnet_small.json"), tmp_path / "bad", weights=wrong)
    assert not (tmp_path / "bad" / "rspnet_small").exists()


def test_features_only_gives_five_levels(built_small):
    model = timm.create_model("rspnet_small", features_only=True, pretrained=True).eval()
    feats = model(X)
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert [f.shape[1] for f in feats] == model.feature_info.channels()
    assert [tuple(f.shape[-2:]) for f in feats] == [(-(-72 // r), -(-100 // r)) for r in (2, 4, 8, 16, 32)]


@pytest.mark.parametrize("output_stride", [16, 8])
def test_features_only_honours_output_stride(output_stride):
    model = timm.create_model("rspnet_small", features_only=True, output_stride=output_stride).eval()
    feats = model(X)
    expected = [min(r, output_stride) for r in (2, 4, 8, 16, 32)]
    assert model.feature_info.reduction() == expected
    assert [tuple(f.shape[-2:]) for f in feats] == [(-(-72 // r), -(-100 // r)) for r in expected]


def test_output_stride_that_is_not_a_power_of_two_is_refused():
    with pytest.raises(ZooError, match="output_stride"):
        timm.create_model("rspnet_small", output_stride=12)


def finest_head_size(genotype, size: tuple[int, int]) -> tuple[int, int]:
    """The decoder works at its finest input's resolution: every stride-2 stage rounds up (padding 1)."""
    finest = min(n.reduction for n in genotype.network.nodes if n.id in genotype.head.inputs)
    h, w = size
    for _ in range(finest.bit_length() - 1):
        h, w = -(-h // 2), -(-w // 2)
    return h, w


def test_timm_head_api():
    model = timm.create_model("rspnet_small").eval()
    features = model.forward_features(X)
    h, w = finest_head_size(load_spec(GENOTYPES / "rspnet_small.json"), tuple(X.shape[-2:]))
    assert features.shape == (1, model.num_features, h, w)
    assert model.forward_head(features, pre_logits=True).shape == features.shape
    assert model.forward_head(features).shape == (1, 19, h, w)
    assert model.get_classifier().out_channels == 19
    model.reset_classifier(4)
    assert model(X).shape == (1, 4, 72, 100)
    final, intermediates = model.forward_intermediates(X)
    assert final.shape == features.shape and len(intermediates) == 5
