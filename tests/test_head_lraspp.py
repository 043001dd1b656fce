"""The `lraspp` head is torchvision's LRASPP head: with torchvision's head weights copied in, the network's
logits are torchvision's LRASPP on the same features; it folds, exports, counts and times like any head."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from rspnet_zoo import GenotypeNet, optimize
from rspnet_zoo.errors import SpecError
from rspnet_zoo.interop.export import export_model
from rspnet_zoo.perf import latency as lat
from rspnet_zoo.spec.heads import HEADS
from rspnet_zoo.spec.io import genotype_from_dict
from rspnet_zoo.spec.plan import lower
from rspnet_zoo.zoo.stats import count_flops, count_parameters

CLASSES = 5


def conv(id_, source, reduction, channels, kernel=3):
    return {
        "id": id_,
        "layer": "conv",
        "args": {"kernel": kernel},
        "reduction": reduction,
        "channels": channels,
        "inputs": [{"paths": [{"node": source}]}],
    }


def lraspp_spec(low: int = 40, high: int = 960, **head) -> dict:
    """Layers to a ``low``-wide map at 1/8 and a ``high``-wide one at 1/16 (MobileNetV3-Large's C2 and C5)."""
    return {
        "format_version": 1,
        "name": "lraspp_test",
        "network": {
            "nodes": [
                conv("s2", "input", 2, 8),
                conv("s4", "s2", 4, 16),
                conv("c8", "s4", 8, low),
                conv("c16", "c8", 16, high, kernel=1),
            ]
        },
        "head": {"type": "lraspp", "input": "c16", "low_level": "c8", **head},
        "defaults": {"num_classes": CLASSES, "input_size": [3, 64, 64]},
    }


def with_statistics(model: nn.Module) -> nn.Module:
    """BatchNorms as after training, so that a fold or a wrong eps would show."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


class NodeFeatures(nn.Module):
    """torchvision's backbone contract ({'low', 'high'}) over a spec network's own nodes: the same encoder."""

    def __init__(self, net: GenotypeNet, low: int, high: int):
        super().__init__()
        self.net, self.low, self.high = net, low, high

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        states = self.net.run_nodes(x, len(self.net.nodes))
        return {"low": states[self.low], "high": states[self.high]}


def copy_torchvision_head(head: nn.Module, net: GenotypeNet) -> None:
    """torchvision's LRASPPHead into the spec's decoder and classifier: the two 1x1 classifiers become one
    on the concatenation (gated branch first), their biases summed."""
    d = net.decoder
    d.cbr[0].weight.data.copy_(head.cbr[0].weight)
    d.cbr[1].load_state_dict(head.cbr[1].state_dict())
    d.scale[1].weight.data.copy_(head.scale[1].weight)
    net.classifier.weight.data.copy_(torch.cat([head.high_classifier.weight, head.low_classifier.weight], dim=1))
    net.classifier.bias.data.copy_(head.high_classifier.bias + head.low_classifier.bias)


def test_the_network_is_torchvisions_lraspp_on_the_same_features():
    torch.manual_seed(0)
    reference = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=CLASSES)
    net = with_statistics(GenotypeNet(genotype_from_dict(lraspp_spec())))
    with_statistics(reference.classifier)
    for p in reference.classifier.parameters():  # not the initialisation's zeros and ones
        p.data.normal_(0, 0.1)
    copy_torchvision_head(reference.classifier, net)
    reference.backbone = NodeFeatures(net, low=3, high=4)
    # one classifier where torchvision has two: the same weights, and one bias vector where two only ever add
    ours = count_parameters(net.decoder) + count_parameters(net.classifier)
    assert ours == count_parameters(reference.classifier) - CLASSES
    with torch.no_grad():
        for h, w in ((64, 64), (45, 71)):
            x = torch.randn(2, 3, h, w)
            torch.testing.assert_close(net(x), reference.eval()(x)["out"], atol=1e-5, rtol=1e-5)


def test_on_a_timm_encoders_levels_it_is_torchvisions_lraspp_on_the_same_encoder():
    """The head on encoder level nodes (mobilenetv3_small_050: 16 channels at 1/8, 288 at 1/32)."""
    from torchvision.models.segmentation.lraspp import LRASPP

    level = {"inputs": [{"paths": [{"node": "input"}]}], "encoder": "backbone"}
    spec = lraspp_spec()
    spec["encoders"] = {"backbone": {"model": "mobilenetv3_small_050"}}
    spec["network"]["nodes"] = [
        {"id": "c8", "level": 2, "reduction": 8, "channels": 16, **level},
        {"id": "c16", "level": 4, "reduction": 32, "channels": 288, **level},
    ]
    torch.manual_seed(0)
    net = with_statistics(GenotypeNet(genotype_from_dict(spec)))
    reference = LRASPP(NodeFeatures(net, low=1, high=2), 16, 288, CLASSES).eval()
    with_statistics(reference.classifier)
    copy_torchvision_head(reference.classifier, net)
    with torch.no_grad():
        x = torch.randn(1, 3, 75, 97)
        torch.testing.assert_close(net(x), reference(x)["out"], atol=1e-5, rtol=1e-5)


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return with_statistics(timm.create_model("rspnet", genotype=genotype_from_dict(lraspp_spec(low=16, high=32))))


def test_it_folds_to_the_eager_outputs():
    model = small_model()
    fast = optimize(model)
    with torch.no_grad():
        for h, w in ((64, 64), (37, 53)):
            x = torch.randn(1, 3, h, w)
            assert (fast(x) - model(x)).abs().max().item() <= 1e-4


@pytest.mark.slow  # an ONNX export: seconds
def test_its_onnx_export_gives_the_eager_outputs_at_any_size(tmp_path):
    model = small_model()
    info = export_model(optimize(model), "onnx", tmp_path / "m.onnx", (64, 64), dynamic_size=True, reference=model)
    assert info["max_abs_diff"] <= 1e-4


def test_its_parameters_flops_and_bound_and_the_decoders_features():
    genotype = genotype_from_dict(lraspp_spec(low=16, high=32, channels=24))
    net = GenotypeNet(genotype).eval()
    head = count_parameters(net.decoder) + count_parameters(net.classifier)
    # cbr 1x1 + BN, the gate's 1x1, the classifier over 24 + 16 channels
    assert head == 32 * 24 + 2 * 24 + 32 * 24 + (24 + 16) * CLASSES + CLASSES
    assert head <= HEADS["lraspp"].max_parameters(lower(genotype).head_inputs, None, genotype.head, CLASSES)
    assert net.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 24 + 16, 8, 8)
    assert count_flops(net, (3, 64, 64)) > 0


def test_its_latency_units_run_in_the_optimised_runtime_as_eager():
    genotype = genotype_from_dict(lraspp_spec(low=16, high=32))
    units = [p.unit for p in lat.plan_units(lat.lower(genotype), genotype, (32, 48)) if p.unit.kind == "decoder"]
    (unit,) = units
    module, inputs = lat.UNITS["decoder"](*unit.args)
    run = lat._prepared(module.eval(), inputs, lat.Target(runtime="optimized", threads=1, size=(32, 48)))
    with torch.no_grad():
        torch.testing.assert_close(run(), module(*inputs), atol=1e-4, rtol=1e-4)


def test_a_low_level_feature_coarser_than_the_input_is_refused_at_its_pointer():
    spec = lraspp_spec()
    spec["head"].update(input="c8", low_level="c16")
    with pytest.raises(SpecError, match="/head/low_level"):
        lower(genotype_from_dict(spec))
