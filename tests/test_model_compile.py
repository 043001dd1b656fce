"""Every shipped spec compiles and runs; compiled models trace, script and compile."""

import pytest
import torch
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.resources import shipped_specs
from rspnet_zoo.spec.io import load_spec
from rspnet_zoo.zoo.stats import count_flops, count_parameters, meta_model

SPECS = shipped_specs()
RSPNET_SPECS = [p for p in SPECS if p.stem.startswith("rspnet_")]
FULL_SIZES = ((256, 512), (250, 333))
QUARTER_SIZES = ((64, 128), (62, 83))
# The default run keeps to its time budget on 2 cores: specs heavier than this at 256x512
# (the stride-1 CIFAR nets, Auto-DeepLab) run at a quarter of the size there, and at full size
# in the slow suite.
DEFAULT_RUN_FLOPS = 20e9


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return GenotypeNet(load_spec(RSPNET_SPECS[0].parent / "rspnet_small.json")).eval()


def expected_shape(model, h, w):
    """Segmentation specs give logits at input size (or at a fixed reduction), classifiers (B, C)."""
    if getattr(model, "output_reduction", 1) is None:
        return (1, model.num_classes)
    r = getattr(model, "output_reduction", 1)
    return (1, model.num_classes, -(-h // r), -(-w // r))


def check_forward(genotype, sizes):
    torch.manual_seed(0)
    model = GenotypeNet(genotype).eval()
    with torch.inference_mode():
        for h, w in sizes:
            out = model(torch.randn(1, 3, h, w))
            assert tuple(out.shape) == expected_shape(model, h, w)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_compiles_and_runs(path):
    genotype = load_spec(path)
    light = count_flops(meta_model(genotype), (3, *FULL_SIZES[0])) <= DEFAULT_RUN_FLOPS
    check_forward(genotype, FULL_SIZES if light else QUARTER_SIZES)


@pytest.mark.slow
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_runs_at_full_size(path):
    check_forward(load_spec(path), FULL_SIZES)


def test_rspnet_sizes_match_their_budgets():
    small = count_parameters(meta_model(load_spec(RSPNET_SPECS[0].parent / "rspnet_small.json")))
    c = count_parameters(meta_model(load_spec(RSPNET_SPECS[0].parent / "rspnet_c.json")))
    with torch.device("meta"):
        lraspp = count_parameters(lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=19))
    assert small * 3 <= lraspp  # issue 10: at most a third of LRASPP MobileNetV3-Large's parameters
    assert c <= 2_600_000  # a quarter of Auto-DeepLab-S (10,147,683)


def test_backward_reaches_every_parameter(small):
    model = GenotypeNet(small.genotype).train()
    model(torch.randn(2, 3, 64, 96)).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_torchscript_matches_eager(small):
    x = torch.randn(1, 3, 70, 90)
    scripted = torch.jit.script(small)
    torch.testing.assert_close(scripted(x), small(x))


def test_fx_symbolic_trace_matches_eager(small):
    x = torch.randn(1, 3, 70, 90)
    traced = torch.fx.symbolic_trace(small)
    torch.testing.assert_close(traced(x), small(x))


@pytest.mark.slow  # seconds of training; the default suite keeps a faster check of the same path
def test_torch_compile_captures_one_graph(small):
    """Dynamo + AOT autograd without graph breaks; inductor's codegen is the slow test below."""
    torch._dynamo.reset()
    x = torch.randn(1, 3, 64, 64)
    compiled = torch.compile(small, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), small(x))


@pytest.mark.slow
def test_torch_compile_inductor_matches_eager(small):
    torch._dynamo.reset()
    x = torch.randn(1, 3, 64, 64)
    compiled = torch.compile(small)
    torch.testing.assert_close(compiled(x), small(x), rtol=1e-4, atol=1e-4)


def test_output_stride_changes_resolution_not_weights(small):
    for os_ in (16, 8):
        model = GenotypeNet(small.genotype, output_stride=os_).eval()
        model.load_state_dict(small.state_dict())
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, 19, 64, 96)
        assert max(f["reduction"] for f in model.feature_info) == os_


def test_rsp_partial_channels_shrink_the_cell():
    genotype = load_spec(RSPNET_SPECS[0].parent / "rspnet_small.json")
    doc = genotype.model_dump(mode="json")
    for node in doc["network"]["nodes"]:
        node.pop("partial", None)
    from rspnet_zoo.spec.io import genotype_from_dict

    full = count_parameters(meta_model(genotype_from_dict(doc)))
    assert count_parameters(meta_model(genotype)) < full
