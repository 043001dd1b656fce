"""Every listed name behaves as timm's own model tests expect (tests/test_models.py in timm), on tiny inputs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import timm
import torch
from timm.data import create_transform, resolve_data_config
from torchvision.models.feature_extraction import create_feature_extractor as tv_feature_extractor

from rspnet_zoo.errors import ZooError
from rspnet_zoo.spec.io import load_spec
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.timm_registration import DEFAULT_GENERIC, refresh_tags

ZOO_NAMES = timm.list_models(module="timm_registration")
ZOO_NAMES_AND_TAGS = timm.list_models(module="timm_registration", include_tags=True)
HEAVY = {"autodeeplab_l", "autodeeplab_m", "dpc_xception71_cityscapes"}  # 20M-44M parameters: `pytest -m slow`
TINY = Path(__file__).parent / "data" / "tiny_net.json"
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # many small models: no threads spin-waiting


def expected_output(model, size: int) -> tuple[int, ...]:
    if model.output_reduction is None:
        return (1, model.num_classes)
    r = model.output_reduction
    return (1, model.num_classes, -(-size // r), -(-size // r))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ZOO_NAMES])
def test_every_listed_name_builds_with_defaults_and_its_cfg_names_real_parameters(name):
    assert set(ZOO_NAMES) == {*SHIPPED, "rspnet"}
    model = timm.create_model(name).eval()
    cfg = model.pretrained_cfg
    state = model.state_dict()
    first_conv = [cfg["first_conv"]] if isinstance(cfg["first_conv"], str) else cfg["first_conv"]
    assert first_conv and all(f"{fc}.weight" in state for fc in first_conv)
    assert state[f"{first_conv[0]}.weight"].shape[1] == cfg["input_size"][0] == model.in_chans
    assert f"{cfg['classifier']}.weight" in state
    assert cfg["num_classes"] == model.num_classes == state[f"{cfg['classifier']}.weight"].shape[0]
    assert len(cfg["input_size"]) == 3 and cfg["mean"] and cfg["std"]
    size = 32 if cfg["input_size"][1] <= 32 else 64
    x = torch.randn(1, cfg["input_size"][0], size, size)
    with torch.no_grad():
        assert model(x).shape == expected_output(model, size)
        model.reset_classifier(0)  # timm: num_classes=0 gives the pre-logits features
        features = model(x)
    assert features.shape[1] == model.num_features
    assert not any(n.startswith(f"{cfg['classifier']}.") for n in model.state_dict())


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ZOO_NAMES_AND_TAGS]
)
def test_timm_default_cfg_checks(name):
    """timm's ``test_model_default_cfgs`` for every name and tag: the cfg's ``pool_size`` is the size of
    ``forward_features`` at its ``input_size`` (checked up to 448 pixels, as timm does), ``classifier`` and
    ``first_conv`` name parameters. Without a classifier a classifier head pools (unless ``global_pool=''``);
    a dense head has nothing to pool, and gives its feature map."""
    model = timm.create_model(name, pretrained=False).eval()
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    cfg, state = model.default_cfg, model.state_dict()
    assert len(cfg["pool_size"]) == 2
    if max(cfg["input_size"]) <= 448:
        x = torch.randn(1, *cfg["input_size"])
        with torch.no_grad():
            features = model.forward_features(x)
            pre_logits = model.forward_head(features, pre_logits=True)
            assert features.shape[1:] == (model.num_features, *cfg["pool_size"])
            assert pre_logits.shape[1] == model.head_hidden_size
            model.reset_classifier(0)
            assert model.num_classes == 0
            if model.is_classifier:
                assert model(x).shape == pre_logits.shape == (1, model.head_hidden_size)
                model.reset_classifier(0, "")
                assert model(x).shape[2:] == cfg["pool_size"]
                unpooled = timm.create_model(name, num_classes=0, global_pool="").eval()
                assert unpooled(x).shape[2:] == cfg["pool_size"]
            else:
                assert model(x).shape[1] == model.num_features
    assert f"{cfg['classifier']}.weight" in state
    first_conv = [cfg["first_conv"]] if isinstance(cfg["first_conv"], str) else cfg["first_conv"]
    assert all(f"{fc}.weight" in state for fc in first_conv)


def test_a_dense_head_refuses_a_global_pool():
    with pytest.raises(ZooError, match="global_pool='avg'.* pools nothing"):
        timm.create_model("rspnet_small", global_pool="avg")


def test_generic_rspnet_without_a_genotype_is_the_documented_default():
    generic, reference = timm.create_model("rspnet"), SHIPPED[DEFAULT_GENERIC]
    assert generic.genotype == reference and DEFAULT_GENERIC in timm.models.model_entrypoint("rspnet").__doc__


def test_trained_weights_report_the_size_they_were_evaluated_at():
    model = timm.create_model("rspnet_small.synth", pretrained=True)
    assert model.pretrained_cfg["input_size"] == (3, 128, 128)  # the card's validation scenes
    config = resolve_data_config(model=model)
    assert config["input_size"] == (3, 128, 128)
    image = torch.rand(3, 128, 128)
    from torchvision.transforms.functional import to_pil_image

    assert create_transform(**config)(to_pil_image(image)).shape == (3, 128, 128)  # nothing cropped away


def test_a_trained_tag_is_listed_once_written_and_gone_once_removed(zoo_home, monkeypatch):
    from rspnet_zoo.training.loop import save_to_zoo

    g = SHIPPED["rspnet_small"]
    metrics = dict(miou=0.5, mean_acc=0.6, fw_iou=0.7, pixel_acc=0.8, images=2, per_class_iou={"a": 0.5, "b": 0.5})
    refresh_tags()  # tags other tests wrote into zoo homes since removed are no longer loadable
    assert "rspnet_small.mine" not in timm.list_pretrained()
    model = timm.create_model("rspnet_small", num_classes=2)
    folder = save_to_zoo(model, g, "mine", ["a", "b"], metrics, data="folder", commands=["-"], input_size=(3, 40, 60))
    assert {"rspnet_small.mine", "rspnet_small.synth"} <= set(timm.list_pretrained("rspnet_small*"))
    assert timm.models.get_pretrained_cfg("rspnet_small.mine").input_size == (3, 40, 60)
    loaded = timm.create_model("rspnet_small.mine", pretrained=True)
    assert loaded.pretrained_cfg["input_size"] == (3, 40, 60) and loaded.num_classes == 2
    card = (folder / "README.md").read_text()
    assert "at 40x60 (the cfg's input_size)" in card
    monkeypatch.setenv("RSPNET_ZOO_HOME", str(zoo_home.parent / "empty-home"))
    refresh_tags()
    assert "rspnet_small.mine" not in timm.list_pretrained() and "rspnet_small.synth" in timm.list_pretrained()


@pytest.fixture(scope="module")
def tiny():
    return timm.create_model("rspnet", genotype=json.loads(TINY.read_text())).eval()


def test_fx_feature_extractors_trace_and_script(tiny):
    """timm's and torchvision's fx feature extractors, and TorchScript of them, give the getter's features."""
    x = torch.randn(1, 3, 64, 64)
    expected = tiny.forward_intermediates(x, intermediates_only=True)
    nodes = {info["module"]: str(i) for i, info in enumerate(tiny.feature_info)}
    for extractor in (timm.models.create_feature_extractor(tiny, nodes), tv_feature_extractor(tiny, nodes)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # this test asks for torch.jit.script itself
            scripted = torch.jit.script(extractor)
        for out in (extractor(x), scripted(x)):
            assert [out[str(i)].shape for i in range(len(expected))] == [e.shape for e in expected]
            assert all(torch.allclose(out[str(i)], e) for i, e in enumerate(expected))


def test_features_only_fx_scripts(tiny):
    genotype = json.loads(TINY.read_text())
    x = torch.randn(1, 3, 64, 64)
    getter = timm.create_model("rspnet", genotype=genotype, features_only=True).eval()
    graph = timm.create_model("rspnet", genotype=genotype, features_only=True, feature_cls="fx").eval()
    graph.load_state_dict(getter.state_dict(), strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(graph)
    assert [f.shape for f in scripted(x)] == [f.shape for f in getter(x)]


def test_our_code_paths_raise_no_deprecation_warning(tmp_path):
    """Building, features, prediction, export: no DeprecationWarning, and no torch.jit deprecation at all."""
    from rspnet_zoo.interop.export import SUFFIXES, export_model
    from rspnet_zoo.nn.fold import optimize

    genotype = load_spec(TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.filterwarnings("error", message=r"`torch\.jit", category=FutureWarning)
        model = timm.create_model("rspnet", genotype=genotype).eval()
        timm.create_model("rspnet", genotype=genotype, features_only=True)(torch.randn(1, 3, 32, 32))
        optimize(model)(torch.randn(1, 3, 32, 32))
        for fmt in ("torchscript", "exported"):
            export_model(model, fmt, tmp_path / f"m{SUFFIXES[fmt]}", (32, 32))


def test_unknown_names_say_that_timm_needs_the_import(run_cli, tmp_path):
    code, _, err = run_cli("predict", "no_such_model", str(TINY), "--out", str(tmp_path / "p"))
    assert code == 2 and "timm knows these names only after `import rspnet_zoo`" in err
