"""nas-segm arch0/arch1 (WACV 2020): published exact parameter counts, block by block, logits at 1/4."""

import pytest
import timm
import torch
from published import NAS_SEGM_BLOCKS as BLOCKS
from published import NAS_SEGM_CLASSIFIER as CONV_CLF
from published import NAS_SEGM_COUNTS as COUNTS
from published import NAS_SEGM_ENCODER as ENCODER

import rspnet_zoo  # noqa: F401  (registers the specs with timm)
from rspnet_zoo.zoo.stats import count_parameters


def meta_net(name):
    with torch.device("meta"):
        return timm.create_model(name)


@pytest.mark.parametrize("name", COUNTS)
def test_parameter_count_is_exact_block_by_block(name):
    model = meta_net(name)
    assert count_parameters(model) == COUNTS[name]
    ids = [n.id for n in model.genotype.network.nodes]
    per_node = [count_parameters(node) for node in model.nodes]
    assert sum(per_node[:7]) == ENCODER
    blocks = [sum(c for i, c in zip(ids, per_node) if i == f"block{j}" or i.startswith(f"block{j}_")) for j in range(7)]
    assert (blocks, count_parameters(model.decoder)) == BLOCKS[name]
    assert count_parameters(model.classifier) == CONV_CLF


@pytest.mark.parametrize("name", COUNTS)
def test_logits_come_out_at_a_quarter_and_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = timm.create_model(name).train()
    assert model.output_reduction == 4
    logits = model(torch.randn(2, 3, 129, 129))
    assert logits.shape == (2, 19, 33, 33)
    logits.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_head_collects_the_block_outputs_no_later_block_reads():
    assert timm.create_model("nas_segm_arch0").genotype.head.inputs == ["block2", "block4", "block5", "block6"]
    assert timm.create_model("nas_segm_arch1").genotype.head.inputs == ["block3", "block4", "block5", "block6"]


def test_features_only_gives_every_reduction_even_when_a_finer_map_comes_last():
    model = timm.create_model("nas_segm_arch1", features_only=True).eval()
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 65, 65))
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert [tuple(m.shape[-2:]) for m in maps] == [(33, 33), (17, 17), (9, 9), (5, 5), (3, 3)]
