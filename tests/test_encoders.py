"""timm encoders in a spec: specs on several timm families build, run at any size, fold and export; every
refusal names its place; encoder weights load as timm loads them; a built folder holds the whole network."""

from __future__ import annotations

import copy
import json

import pytest
import timm
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspnet_zoo.errors import SpecError, WeightsError
from rspnet_zoo.nn.encoders import encoder_errors
from rspnet_zoo.nn.fold import optimize
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.spec.io import dump_spec, genotype_from_dict, spec_sha256
from rspnet_zoo.zoo.registry import create_genotype_net

ODD = (65, 97)


def encoder_spec(model: str, levels: tuple[int, ...] = (), **encoder) -> dict:
    """A spec on timm's ``model``: its last two levels (or ``levels``) as nodes, a conv on the deepest, fusion head;
    reductions and channels written from timm's feature_info."""
    info = timm.create_model(model, features_only=True, pretrained=False).feature_info
    levels = levels or (len(info.reduction()) - 2, len(info.reduction()) - 1)
    nodes = [
        {
            "id": f"l{level}",
            "encoder": "backbone",
            "level": level,
            "reduction": info.reduction()[level],
            "channels": info.channels()[level],
            "inputs": [{"paths": [{"node": "input"}]}],
        }
        for level in levels
    ]
    deepest = nodes[-1]
    nodes.append(
        {
            "id": "mix",
            "layer": "conv",
            "reduction": deepest["reduction"],
            "channels": 16,
            "inputs": [{"paths": [{"node": deepest["id"]}]}],
        }
    )
    return {
        "format_version": 1,
        "name": "enc_" + model.replace(".", "_"),
        "encoders": {"backbone": {"model": model, **encoder}},
        "network": {"nodes": nodes},
        "head": {"type": "fusion", "inputs": [n["id"] for n in nodes[:-2]] + ["mix"], "channels": 16},
        "defaults": {"num_classes": 3, "input_size": [3, 64, 96]},
    }


FAMILIES = [
    "mobilenetv3_small_050",
    "efficientnet_lite0",
    "resnet10t",
    "convnext_atto",
    "mobilenetv4_conv_small",
    "tf_efficientnet_lite0",  # 'same' padding: timm's fx leaves
]
FAST = "mobilenetv3_small_050"


@pytest.fixture(scope="module")
def small() -> GenotypeNet:
    torch.manual_seed(0)
    return GenotypeNet(encoder_spec(FAST)).eval()


@pytest.mark.parametrize(
    "model",
    [pytest.param(m, marks=() if m == FAST else pytest.mark.slow) for m in FAMILIES],
)
def test_specs_on_timm_families_run_at_odd_sizes_fold_export_and_give_features(model, tmp_path):
    from rspnet_zoo.interop.export import export_model

    torch.manual_seed(0)
    net = GenotypeNet(encoder_spec(model)).eval()
    calls = []
    net.encoders["backbone"].register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(1, 3, *ODD)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (1, 3, *ODD) and torch.isfinite(y).all()
        assert len(calls) == 1  # all levels from one run of the shared encoder
        fast = optimize(net)
        assert (fast(x) - y).abs().max() <= 1e-4
    exported = export_model(fast, "onnx", tmp_path / "m.onnx", (64, 96), dynamic_size=True, reference=net)
    assert exported["max_abs_diff"] <= 1e-4 and len(exported["checked_sizes"]) == 2  # 64x96 and an odd size
    features = create_genotype_net(net.genotype.name, net.genotype, features_only=True).eval()
    maps = features(x)
    assert [m.shape[1] for m in maps] == features.feature_info.channels()
    assert [m.shape[-2:] for m in maps] == [
        (-(-ODD[0] // r), -(-ODD[1] // r)) for r in features.feature_info.reduction()
    ]


def test_encoder_levels_at_multiples_are_timm_s_own_features(small):
    encoder = small.encoders["backbone"]
    assert all(
        k.startswith("encoders.backbone.")
        for k in small.state_dict()
        if not k.startswith(("nodes", "decoder", "classifier"))
    )
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        levels = small.encode(x)
        timm_levels = encoder(x)
    assert len(levels) == 2 and all(torch.equal(a, b) for a, b in zip(levels, timm_levels))


@pytest.mark.slow  # scripting timm's MobileNetV3 takes seconds; the shipped specs keep a TorchScript check
def test_torchscript_keeps_the_encoder(small):
    x = torch.randn(1, 3, *ODD)
    with torch.no_grad():
        assert (torch.jit.script(small)(x) - small(x)).abs().max() <= 1e-5


def test_no_encoders_key_when_none_so_shipped_hashes_hold():
    from rspnet_zoo import SHIPPED

    for g in SHIPPED.values():
        if not g.encoders:  # dpc_xception71_cityscapes has one
            assert "encoders" not in json.loads(dump_spec(g))
    doc = encoder_spec(FAST)
    assert json.loads(dump_spec(genotype_from_dict(doc)))["encoders"] == {"backbone": {"model": FAST}}


def test_stats_count_the_encoder(small):
    from rspnet_zoo.zoo.stats import count_flops, count_parameters, spec_stats

    encoder = sum(p.numel() for p in small.encoders.parameters())
    stats = spec_stats(small.genotype)
    assert stats["parameters"] == count_parameters(small) > encoder > 0
    alone = count_flops(small.encoders["backbone"], small.genotype.defaults.input_size)
    assert stats["flops"] > alone > 0


def _refused(doc: dict, change) -> SpecError:
    doc = copy.deepcopy(doc)
    change(doc)
    with pytest.raises(SpecError) as e:
        g = genotype_from_dict(doc)
        raise next(iter(encoder_errors(g)))
    return e.value


def _set(path: str, value):
    def change(doc):
        *parents, key = path.split("/")
        node = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(key) if isinstance(node, list) else key] = value

    return change


REFUSALS = [
    # (change, JSON pointer, words in the message); the first three need timm
    (_set("encoders/backbone/model", "no_such_net"), "/encoders/backbone/model", "knows no model"),
    (_set("network/nodes/0/level", 9), "/network/nodes/0/level", "feature levels"),
    (_set("network/nodes/0/channels", 17), "/network/nodes/0/channels", "channels at level 3"),
    (_set("network/nodes/1/reduction", 16), "/network/nodes/1/reduction", "1/32"),
    (_set("encoders/backbone/kwargs", {"no_such_kwarg": 1}), "/encoders/backbone/kwargs", "refused"),
    (
        _set("network/nodes/0/inputs", [{"paths": [{"node": "input"}, {"node": "input"}]}]),
        "/network/nodes/0/inputs",
        "only the image",
    ),
    (_set("network/nodes/1/inputs", [{"paths": [{"node": "l3"}]}]), "/network/nodes/1/inputs", "only the image"),
    (_set("network/nodes/0/encoder", "other"), "/network/nodes/0/encoder", "unknown encoder 'other'"),
    (_set("network/nodes/1/level", 3), "/network/nodes/1/level", "already"),
    (
        _set("encoders/backbone/kwargs", {"out_indices": 1}),
        "/encoders/backbone/kwargs/out_indices",
        "set by the builder",
    ),
    (_set("encoders/backbone/pretrained", "Not A Tag"), "/encoders/backbone/pretrained", ""),
    (_set("encoders/backbone/kwargs", {"drop_rate": [0.1]}), "/encoders/backbone/kwargs/drop_rate", ""),
    (_set("encoders/backbone/model", "Bad-Name"), "/encoders/backbone/model", "pattern"),
    (lambda d: d["network"]["nodes"][0].pop("level"), "/network/nodes/0", "level"),
    (lambda d: d["network"]["nodes"][0].update(cell="c"), "/network/nodes/0", "exactly one"),
    (lambda d: d["network"]["nodes"][2].update(level=1), "/network/nodes/2/level", "only encoder nodes"),
    (
        lambda d: d["network"]["nodes"].insert(1, d["network"]["nodes"].pop(2)),
        "/network/nodes/2",
        "come first",
    ),
]


@pytest.mark.parametrize("change,where,words", REFUSALS)
def test_refusals_name_their_place(change, where, words):
    error = _refused(encoder_spec(FAST), change)
    assert error.pointer == where and words in error.reason, str(error)
    assert "\n" not in str(error)


FAST_INFO = timm.create_model(FAST, features_only=True).feature_info
ONE_LEVEL = encoder_spec(FAST, levels=(4,))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(level=st.integers(0, 7), reduction=st.sampled_from([2, 4, 8, 16, 32, 64]), channels=st.integers(1, 400))
def test_a_level_node_is_accepted_iff_it_says_what_timm_gives(level, reduction, channels):
    """One level node, anything written: accepted exactly when the level exists with these reduction and
    channels; else the error points into that node."""
    doc = copy.deepcopy(ONE_LEVEL)
    doc["network"]["nodes"][0].update(level=level, reduction=reduction, channels=channels)
    doc["network"]["nodes"][1]["reduction"] = reduction
    errors = list(encoder_errors(genotype_from_dict(doc)))
    levels = len(FAST_INFO.reduction())
    truth = level < levels and (FAST_INFO.reduction()[level], FAST_INFO.channels()[level]) == (reduction, channels)
    assert (not errors) == truth
    assert all(e.pointer.startswith("/network/nodes/0/") for e in errors)


@settings(max_examples=30, deadline=None)
@given(
    value=st.one_of(
        st.lists(st.integers(), min_size=1, max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2),
    )
)
def test_encoder_kwargs_are_json_scalars(value):
    doc = copy.deepcopy(ONE_LEVEL)
    doc["encoders"]["backbone"]["kwargs"] = {"drop_rate": value}
    with pytest.raises(SpecError) as e:
        genotype_from_dict(doc)
    assert e.value.pointer.startswith("/encoders/backbone/kwargs/drop_rate")


def test_in_chans_reaches_the_encoder():
    net = GenotypeNet(encoder_spec(FAST), in_chans=1).eval()
    assert net.encoders["backbone"].conv_stem.in_channels == 1
    assert net(torch.randn(1, 1, *ODD)).shape == (1, 3, *ODD)


def test_an_unused_encoder_is_accepted_and_builds_nothing_like_an_unused_cell():
    doc = encoder_spec(FAST)
    doc["encoders"]["spare"] = {"model": "resnet10t"}
    net = GenotypeNet(doc)
    assert list(net.encoders) == ["backbone"]


def test_output_stride_finer_than_an_encoder_level_is_refused_not_ignored():
    with pytest.raises(SpecError, match="kwargs"):
        GenotypeNet(encoder_spec(FAST), output_stride=16)


@pytest.mark.parametrize("model", ["resnet10t", FAST])  # MobileNetV3 takes output_stride only as a feature model
def test_encoder_output_stride_is_timm_s_kwarg(model):
    doc = encoder_spec(model, kwargs={"output_stride": 16})
    with pytest.raises(SpecError, match="1/16"):
        GenotypeNet(doc)
    doc["network"]["nodes"][1]["reduction"] = doc["network"]["nodes"][2]["reduction"] = 16
    net = GenotypeNet(doc).eval()
    assert net(torch.randn(1, 3, *ODD)).shape == (1, 3, *ODD)


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory):
    """A randomly initialised timm model's weights in a local file: what timm's cache would hold."""
    file = tmp_path_factory.mktemp("timm") / "weights.pth"
    torch.manual_seed(1)
    state = timm.create_model(FAST).state_dict()
    torch.save(state, file)
    return file, state


@pytest.mark.parametrize("pretrained", [True, "lamb_in1k"])
def test_pretrained_encoder_loads_as_timm_loads_it(timm_weights, pretrained):
    file, state = timm_weights
    doc = encoder_spec(FAST, pretrained=pretrained)
    net = GenotypeNet(doc, encoder_overlays={"backbone": dict(file=str(file))})
    loaded = net.encoders["backbone"].state_dict()
    assert loaded and all(torch.equal(v, state[k]) for k, v in loaded.items())
    fresh = GenotypeNet(doc, pretrained_encoders=False)
    assert not torch.equal(fresh.encoders["backbone"].conv_stem.weight, state["conv_stem.weight"])


def test_pretrained_encoder_without_weights_is_one_line(tmp_path):
    doc = encoder_spec(FAST, pretrained="no_such_tag")
    with pytest.raises((WeightsError, SpecError)) as e:
        GenotypeNet(doc, encoder_overlays={"backbone": dict(file=str(tmp_path / "missing.pth"))})
    assert "/encoders/backbone/pretrained" in str(e.value) and "\n" not in str(e.value)


def test_built_folder_holds_the_whole_network(timm_weights, tmp_path):
    from rspnet_zoo.zoo.folder import FolderWeights, write_folder
    from rspnet_zoo.zoo.weights import initialised

    file, state = timm_weights
    g = genotype_from_dict(encoder_spec(FAST, pretrained=True))
    model = GenotypeNet(g, encoder_overlays={"backbone": dict(file=str(file))})
    folder, _ = write_folder(g, tmp_path, FolderWeights(model, initialised(0)))
    reloaded = timm.create_model(f"local-dir:{folder}", pretrained=True, allow_untrained=True).eval()
    assert reloaded.genotype == g and spec_sha256(reloaded.genotype) == spec_sha256(g)
    ours, theirs = model.eval().state_dict(), reloaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert torch.equal(reloaded.encoders["backbone"].conv_stem.weight, state["conv_stem.weight"])


def test_latency_tables_time_each_encoder_as_one_unit(small):
    from rspnet_zoo.perf import latency as lat

    g, size = small.genotype, (64, 96)
    placed = lat.plan_units(lat.lower(g), g, size)
    (encoder,) = [p.unit for p in placed if p.role == "encoder"]
    assert not [p for p in placed if p.node in (0, 1) and p.role != "encoder"]  # its levels add no node units
    module, inputs = lat.UNITS["encoder"](*encoder.args)
    module.encoder.load_state_dict(small.encoders["backbone"].state_dict())
    run = lat._prepared(module, inputs, lat.Target(runtime="optimized", threads=1, size=size))
    with torch.no_grad():
        for got, expected in zip(run(), small.encode(inputs[0]), strict=True):
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_diff_names_an_encoder_change():
    from rspnet_zoo.spec.diff import diff_specs

    a = genotype_from_dict(ONE_LEVEL)
    changed = copy.deepcopy(ONE_LEVEL)
    changed["encoders"]["backbone"].update(pretrained="lamb_in1k", kwargs={"drop_rate": 0.2})
    changes = diff_specs(a, genotype_from_dict(changed))["changes"]
    assert {(c["section"], c["pointer"]) for c in changes} == {
        ("encoders", "/encoders/backbone/pretrained"),
        ("encoders", "/encoders/backbone/kwargs/drop_rate"),
    }


def test_a_built_folder_loads_at_another_in_chans_with_the_encoder_stem_adapted(small, tmp_path):
    from rspnet_zoo.zoo.folder import FolderWeights, write_folder
    from rspnet_zoo.zoo.weights import initialised

    assert small._traits["first_conv"] == ("encoders.backbone.conv_stem",)
    folder, _ = write_folder(small.genotype, tmp_path, FolderWeights(small, initialised(0)))
    gray = timm.create_model(f"local-dir:{folder}", pretrained=True, allow_untrained=True, in_chans=1).eval()
    stem = gray.encoders["backbone"].conv_stem.weight
    assert stem.shape[1] == 1
    torch.testing.assert_close(stem[:, 0], small.encoders["backbone"].conv_stem.weight.sum(dim=1))
