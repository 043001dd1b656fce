"""rspnet_zoo.nn.fold: the same outputs as the eager model on every shipped spec, and still a plain module."""

import json

import pytest
import torch
from torch import nn

from rspnet_zoo import optimize
from rspnet_zoo.errors import ZooError
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.nn.ops import FactorizedReduce
from rspnet_zoo.resources import shipped_specs
from rspnet_zoo.spec.io import load_spec
from rspnet_zoo.zoo.stats import count_flops, meta_model

SPECS = shipped_specs()
SMALL_SIZES = ((64, 96), (47, 61))
TINY_SIZES = ((32, 48), (23, 31))  # the stride-1 CIFAR nets and Auto-DeepLab
DEFAULT_RUN_FLOPS = 1e9
# One spec per family keeps the default run short on 2 shared cores (separable, dilated and
# factorized-reduce BNs, psum/cat aggregates, inverted residuals); the slow run takes them all.
DEFAULT_RUN = ("rspnet_small", "rspnet_c", "darts_v2_imagenet", "nas_segm_arch0")
FULL_SIZES = ((256, 512), (250, 333))
TOLERANCE = 1e-4


def with_trained_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorms with the statistics and affine parameters of a trained net (fresh ones fold to nothing)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def build(path) -> GenotypeNet:
    torch.manual_seed(0)
    return with_trained_statistics(GenotypeNet(load_spec(path)))


def assert_equal_outputs(model, fast, sizes):
    with torch.inference_mode():
        for h, w in sizes:
            x = torch.randn(1, 3, h, w)
            expected, got = model(x), fast(x)
            assert got.shape == expected.shape
            assert (got - expected).abs().max().item() <= TOLERANCE


@pytest.fixture(scope="module")
def small():
    return build(SPECS[0].parent / "rspnet_small.json")


@pytest.mark.parametrize(
    "path",
    [p if p.stem in DEFAULT_RUN else pytest.param(p, marks=pytest.mark.slow) for p in SPECS],
    ids=lambda p: p.stem,
)
def test_every_shipped_spec_gives_the_eager_outputs(path):
    model = build(path)
    light = count_flops(meta_model(model.genotype), (3, *SMALL_SIZES[0])) <= DEFAULT_RUN_FLOPS
    assert_equal_outputs(model, optimize(model), SMALL_SIZES if light else TINY_SIZES)


@pytest.mark.slow
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_gives_the_eager_outputs_at_full_size(path):
    model = build(path)
    assert_equal_outputs(model, optimize(model), FULL_SIZES)


def test_every_batch_norm_and_weight_free_module_is_gone(small):
    fast = optimize(small)
    kinds = {type(m) for m in fast.modules()}
    assert nn.BatchNorm2d not in kinds and nn.Identity not in kinds and nn.Dropout not in kinds
    convs = sum(isinstance(m, nn.Conv2d) for m in small.modules())
    assert sum(isinstance(m, nn.Conv2d) for m in fast.modules()) == convs


def test_the_model_is_left_as_it_was(small):
    before = {k: v.clone() for k, v in small.state_dict().items()}
    optimize(small)
    after = small.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, nn.BatchNorm2d) for m in small.modules())


def test_weights_are_channels_last_and_the_zoo_attributes_kept(small):
    fast = optimize(small)
    assert all(
        m.weight.is_contiguous(memory_format=torch.channels_last) for m in fast.modules() if isinstance(m, nn.Conv2d)
    )
    assert fast.num_classes == small.num_classes and fast.genotype is small.genotype
    plain = optimize(small, channels_last=False)
    assert all(m.weight.is_contiguous() for m in plain.modules() if isinstance(m, nn.Conv2d))
    assert_equal_outputs(small, plain, SMALL_SIZES[:1])


def test_torchscript_and_fx_still_work_after_optimize(small):
    fast = optimize(small)
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        expected = small(x)
        scripted = torch.jit.script(fast)
        torch.testing.assert_close(scripted(x), expected, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(torch.fx.symbolic_trace(fast)(x), expected, atol=TOLERANCE, rtol=0)


def test_batch_norm_before_an_unpadded_conv_and_after_a_concatenation_fold():
    torch.manual_seed(0)
    transition = with_trained_statistics(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(8), nn.Conv2d(8, 5, 1))
    )
    reduce = with_trained_statistics(FactorizedReduce(3, 7))
    padded = with_trained_statistics(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1)))
    plain = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3, affine=False), nn.Conv2d(3, 4, 1)).eval()
    plain[1].running_mean.fill_(0.3)
    x = torch.randn(2, 3, 9, 13)
    for model, batch_norms_left in ((transition, 0), (reduce, 0), (padded, 1), (plain, 0)):
        fast = optimize(model)
        assert sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules()) == batch_norms_left
        with torch.no_grad():
            assert (fast(x) - model(x)).abs().max().item() <= TOLERANCE


class _TwoOpsOfOneState(nn.Module):
    """Two ReLU-Conv ops reading the same state, and an identity edge beside them: the ReLU runs once."""

    def __init__(self):
        super().__init__()
        self.relu_a, self.relu_b, self.relu_c = nn.ReLU(), nn.ReLU(), nn.ReLU(inplace=True)
        self.conv_a, self.conv_b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 1)

    def forward(self, x):
        state = x * 2
        out = self.conv_a(self.relu_a(state)) + self.conv_b(self.relu_b(state)) + state[:, :1]
        return out + self.relu_c(out * 1.5)  # in place: left alone


def test_relus_of_one_tensor_run_once_and_the_outputs_stay():
    torch.manual_seed(0)
    model = _TwoOpsOfOneState().eval()
    fast = optimize(model)
    relus = [n for n in fast.graph.nodes if n.op == "call_module" and isinstance(fast.get_submodule(n.target), nn.ReLU)]
    assert len(relus) == 2 and len({n.args[0] for n in relus}) == 2
    x = torch.randn(2, 3, 9, 13)
    with torch.no_grad():
        assert torch.equal(optimize(model, channels_last=False)(x), model(x))  # the same arithmetic, in NCHW
        assert (fast(x) - model(x)).abs().max().item() <= TOLERANCE


def test_no_two_relus_read_one_tensor_in_the_optimised_rspnet(small):
    fast = optimize(small)
    read = [
        n.args[0]
        for n in fast.graph.nodes
        if n.op == "call_module" and isinstance(fast.get_submodule(n.target), nn.ReLU)
    ]
    assert read and len(read) == len(set(read))


def test_an_untraceable_model_is_one_error():
    class DataDependent(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ZooError, match="torch.fx cannot trace"):
        optimize(DataDependent())


def test_predict_and_eval_give_the_same_results_with_optimize(run_cli, tmp_path):
    image = tmp_path / "scene.png"
    run_cli("data", "sample", str(image), "--size", "48x64")
    results = []
    for flags in ([], ["--optimize"]):
        out = tmp_path / ("fast" if flags else "eager")
        code, stdout, err = run_cli("predict", "rspnet_small.synth", str(image), "--out", str(out), "--json", *flags)
        assert code == 0, err
        masks = (out / "scene_mask.png").read_bytes()
        code, metrics, err = run_cli(
            "eval", "rspnet_small.synth", "--length", "2", "--size", "32x48", "--device", "cpu", "--json", *flags
        )
        assert code == 0, err
        results.append((json.loads(stdout)[0]["classes"], masks, json.loads(metrics)["miou"]))
    assert results[0] == results[1]
