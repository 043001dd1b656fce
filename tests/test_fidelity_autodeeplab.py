"""Auto-DeepLab-S/M/L (a5b5710): published exact parameter counts, run-time pairing, resampling, logits."""

import pytest
import timm
import torch
from published import AUTODEEPLAB_COUNTS as COUNTS

import rspnet_zoo  # noqa: F401  (registers the specs with timm)
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.stats import count_parameters


def meta_net(name):
    with torch.device("meta"):
        return timm.create_model(name)


@pytest.mark.parametrize("name", COUNTS)
def test_parameter_count_is_exact(name):
    assert count_parameters(meta_net(name)) == COUNTS[name]


def test_component_breakdown_matches_the_reference():
    model = meta_net("autodeeplab_s")
    backbone = sum(p.numel() for k, p in model.named_parameters() if k.startswith("nodes."))
    aspp = count_parameters(model.decoder.aspp)
    decoder = count_parameters(model.decoder) - aspp + count_parameters(model.classifier)
    assert (backbone, aspp, decoder) == (7_031_088, 1_815_552, 1_301_043)
    cells = [count_parameters(node) for node in model.nodes[3:]]
    assert cells == [
        38_240,
        38_960,
        38_400,
        135_200,
        512_000,
        151_200,
        536_000,
        536_000,
        2_038_400,
        2_102_400,
        616_000,
        175_200,
    ]


def test_spec_follows_the_run_time_pairing_and_the_previous_cells_resize():
    g = SHIPPED["autodeeplab_s"]
    last = [(e.input, e.op) for e in g.cells["cell"].steps[4].edges]
    assert last == [(4, "full_dil_conv_5x5"), (5, "sep_conv_5x5")]  # n4 = dil5(n2) + sep5(n3)
    nodes = {n.id: n for n in g.network.nodes}
    # cell 5 (1/8) reads cell 3 (1/8) as cell 4 (1/16) resized it: down, then up again
    assert nodes["cell5"].inputs[0].paths[0].node == "cell3"
    assert nodes["cell5"].inputs[0].paths[0].via == [16]
    assert nodes["cell7"].inputs[0].paths[0].via is None


def test_forward_gives_logits_at_input_size_and_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = timm.create_model("autodeeplab_s").train()
    logits = model(torch.randn(2, 3, 33, 33))  # 32k + 1: the cell sizes of a5b5710 exactly
    assert logits.shape == (2, 19, 33, 33)
    logits.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["autodeeplab_m", "autodeeplab_l"])
def test_larger_variants_run_forward_and_backward(name):
    model = timm.create_model(name).train()
    logits = model(torch.randn(2, 3, 65, 65))
    assert logits.shape == (2, 19, 65, 65)
    logits.mean().backward()
    assert all(p.grad is not None for p in model.parameters())
