"""DARTS V1/V2 and PC-DARTS evaluation networks: published exact parameter counts, logits, aux head, drop path."""

import pytest
import timm
import torch
from published import DARTS_COUNTS as COUNTS
from published import DARTS_V2

import rspnet_zoo  # noqa: F401  (registers the specs with timm)
from rspnet_zoo.interop.importers.darts import darts_spec, parse_genotype
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.stats import count_parameters


def meta_net(name, **kwargs):
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


@pytest.mark.parametrize("name", COUNTS)
def test_parameter_count_is_exact_with_and_without_the_auxiliary_head(name):
    without, with_aux = COUNTS[name]
    assert count_parameters(meta_net(name)) == without
    assert count_parameters(meta_net(name, aux_head=True)) == with_aux


def _groups(model):
    """Parameters per component: stem layers, cell preprocessing, cell ops, classifier, auxiliary head."""
    groups = dict(stem=0, preprocess=0, ops=0, classifier=0, aux=0)
    for key, p in model.named_parameters():
        if key.startswith("aux_head."):
            groups["aux"] += p.numel()
        elif key.startswith("classifier."):
            groups["classifier"] += p.numel()
        elif ".layer." in key:
            groups["stem"] += p.numel()
        elif ".inputs." in key:
            groups["preprocess"] += p.numel()
        else:
            groups["ops"] += p.numel()
    return groups


def test_component_breakdown_matches_the_reference():
    assert _groups(meta_net("darts_v2_cifar", aux_head=True)) == dict(
        stem=3_132, preprocess=1_361_232, ops=1_979_208, classifier=5_770, aux=476_426
    )
    assert _groups(meta_net("pc_darts_imagenet", aux_head=True)) == dict(
        stem=11_160 + 20_832, preprocess=1_626_240, ops=2_915_232, classifier=769_000, aux=1_260_776
    )


@pytest.mark.parametrize("name", COUNTS)
def test_forward_gives_one_logits_vector_per_image_and_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = timm.create_model(name, drop_path_rate=0.2).train()
    size = 8 if name.endswith("cifar") else 32  # any size works: the head pools globally
    logits = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, SHIPPED[name].defaults.num_classes)
    logits.logsumexp(dim=1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_aux_head_is_built_on_request_and_used_in_training_only():
    torch.manual_seed(0)
    assert not any(k.startswith("aux_head.") for k in timm.create_model("darts_v2_cifar").state_dict())
    model = timm.create_model("darts_v2_cifar", aux_head=True).train()
    x = torch.randn(2, 3, 32, 32)
    logits, aux_logits = model(x)
    assert logits.shape == aux_logits.shape == (2, 10)
    (logits.logsumexp(1) + 0.4 * aux_logits.logsumexp(1)).mean().backward()
    assert all(p.grad is not None for p in model.aux_head.parameters())
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 10)


def test_aux_head_needs_a_spec_that_declares_one():
    with pytest.raises(rspnet_zoo.ZooError, match="no auxiliary head"):
        GenotypeNet(SHIPPED["rspnet_small"], aux_head=True)


def test_drop_path_is_stochastic_in_training_only_and_keeps_weight_names():
    torch.manual_seed(0)
    small = darts_spec(parse_genotype(DARTS_V2), "cifar", channels=8, layers=3)
    plain = GenotypeNet(small, num_classes=3)
    dropping = GenotypeNet(small, num_classes=3, drop_path_rate=0.5)
    assert plain.state_dict().keys() == dropping.state_dict().keys()
    dropping.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        plain.eval(), dropping.eval()
        torch.testing.assert_close(dropping(x), plain(x))
        dropping.train()
        assert not torch.allclose(dropping(x), dropping(x))


def test_timm_classifier_api():
    model = timm.create_model("darts_v1_imagenet", num_classes=7).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (1, 768, 2, 2)
        assert model.forward_head(features, pre_logits=True).shape == (1, 768)
        assert model.forward_head(features).shape == (1, 7)
        assert model.get_classifier().out_features == 7
        model.reset_classifier(5)
        assert model(x).shape == (1, 5)
        model.reset_classifier(0, global_pool="")
        assert model(x).shape == (1, 768, 2, 2)
    assert model.output_reduction is None
