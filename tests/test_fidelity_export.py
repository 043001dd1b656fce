"""The new structures (classifier and auxiliary heads, templates with psum/cat, resampling via other
resolutions, logits left at 1/4) script with TorchScript, trace with torch.fx and compile.

Small imports of the published encodings keep every structure and script in seconds; the shipped
specs themselves run under the slow mark.
"""

import pytest
import timm
import torch
from published import AUTODEEPLAB_CELL, DARTS_V2

import rspnet_zoo  # noqa: F401  (registers the specs with timm)
from rspnet_zoo.interop.importers.autodeeplab import autodeeplab_spec, parse_cell, parse_path
from rspnet_zoo.interop.importers.darts import darts_spec, parse_genotype
from rspnet_zoo.nn.model import GenotypeNet

SMALL = {
    "darts_small": lambda: darts_spec(parse_genotype(DARTS_V2), "cifar", name="darts_small", channels=8, layers=3),
    # down, down, up: h_pp of the last cell is resampled via 1/16
    "autodeeplab_small": lambda: autodeeplab_spec(
        parse_path("0,1,2,1"), parse_cell(AUTODEEPLAB_CELL), 4, name="autodeeplab_small"
    ),
}
CASES = {
    "darts_small": (1, 3, 16, 16),
    "autodeeplab_small": (1, 3, 33, 33),
    "nas_segm_arch1": (1, 3, 65, 65),
    "darts_v2_cifar": (1, 3, 16, 16),
    "autodeeplab_s": (1, 3, 33, 33),
}
NAMES = [
    "darts_small",
    "autodeeplab_small",
    "nas_segm_arch1",
    pytest.param("darts_v2_cifar", marks=pytest.mark.slow),
    pytest.param("autodeeplab_s", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def models():
    return {}


def _model(models, name):
    if name not in models:
        torch.manual_seed(0)
        models[name] = (GenotypeNet(SMALL[name]()) if name in SMALL else timm.create_model(name)).eval()
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
    model = GenotypeNet(SMALL["darts_small"](), aux_head=True, num_classes=4)
    scripted = torch.jit.script(model).train()
    logits, aux_logits = scripted(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux_logits.shape == (2, 4)


@pytest.mark.slow
def test_torch_compile_matches_eager(models):
    model, x = _model(models, "nas_segm_arch1"), torch.randn(CASES["nas_segm_arch1"])
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x), model(x), rtol=1e-4, atol=1e-4)
