"""The new structures (classifier and auxiliary heads, templates with psum/cat, resampling via other
resolutions, logits left at 1/4) script with TorchScript, trace with torch.fx and compile."""
import pytest
import timm
import torch

import rspnet_zoo  # noqa: F401  (registers the specs with timm)

CASES = {"darts_v2_cifar": (1, 3, 16, 16), "nas_segm_arch1": (1, 3, 65, 65), "autodeeplab_s": (1, 3, 33, 33)}
# scripting and tracing 20 DARTS cells takes long; the aux-head test below scripts a classifier by default
NAMES = [pytest.param("darts_v2_cifar", marks=pytest.mark.slow), "nas_segm_arch1", "autodeeplab_s"]


@pytest.fixture(scope="module")
def models():
    return {}


def _model(models, name):
    if name not in models:
        torch.manual_seed(0)
        models[name] = timm.create_model(name).eval()
    return models[name]


@pytest.mark.parametrize("name", NAMES)
def test_torchscript_matches_eager(models, name):
    model, x = _model(models, name), torch.randn(CASES[name])
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_fx_symbolic_trace_matches_eager(models, name):
    model, x = _model(models, name), torch.randn(CASES[name])
    with torch.no_grad():
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), model(x))


def test_scripted_aux_head_returns_both_logits_in_training():
    model = timm.create_model("darts_v2_cifar", aux_head=True, num_classes=4)
    scripted = torch.jit.script(model).train()
    logits, aux_logits = scripted(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux_logits.shape == (2, 4)


@pytest.mark.slow
def test_torch_compile_matches_eager(models):
    model, x = _model(models, "nas_segm_arch1"), torch.randn(CASES["nas_segm_arch1"])
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x), model(x), rtol=1e-4, atol=1e-4)
