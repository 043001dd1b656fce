"""`search --encoder TIMM_NAME`: the cells and paths are searched over a timm encoder's feature levels and the
emitted spec has the encoder's level nodes first; a frozen encoder takes no step; bad requests are one line."""

from __future__ import annotations

import json

import pytest
import torch

from rspnet_zoo import GenotypeNet, load_spec
from rspnet_zoo.errors import ZooError
from rspnet_zoo.spec.plan import lower
from searchers.rspnet.budgets import EncoderLevel, SearchEncoder, resolve_config
from searchers.rspnet.encoder import search_encoder
from searchers.rspnet.estimate import stand_in_cell
from searchers.rspnet.path_search import PathSupernet
from searchers.rspnet.request import rspnet_request
from searchers.rspnet.structures import ENCODER, lattice, lattice_roots, path_network

TINY = "mobilenetv3_small_050"
# mobilenetv3_small_050's levels at 1/4 .. 1/32, as timm's feature_info gives them
LEVELS = SearchEncoder(
    model=TINY,
    levels=(
        EncoderLevel(level=1, reduction=4, channels=8),
        EncoderLevel(level=2, reduction=8, channels=16),
        EncoderLevel(level=3, reduction=16, channels=24),
        EncoderLevel(level=4, reduction=32, channels=288),
    ),
)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_timms_levels_at_a_quarter_to_a_thirty_second_are_the_lattices_first_layer():
    assert search_encoder(TINY) == LEVELS
    nodes = lattice(2, two_back=False, encoder=LEVELS)
    assert lattice_roots(nodes) == ("enc_r16", "enc_r32", "enc_r4", "enc_r8")
    assert [n.id for n in nodes if n.layer == 1] == ["l1_r4", "l1_r8", "l1_r16", "l1_r32"]  # every level at once
    assert nodes[0].previous == ("enc_r4", "enc_r8")
    coarse = lattice(1, two_back=False, stem_reduction=8, encoder=LEVELS)  # path.stem_reduction=8: from 1/8 down
    assert [n.id for n in coarse] == ["l1_r8", "l1_r16", "l1_r32"] and "enc_r4" not in lattice_roots(coarse)


def test_the_lattice_over_an_encoder_is_a_spec_whose_encoder_levels_come_first():
    genotype = path_network(stand_in_cell(2, ("sep_conv_3x3",)), lattice(2, False, encoder=LEVELS), 4, 0.5,
                            (0, 0, 0, 0), 9, encoder=LEVELS)  # fmt: skip
    assert list(genotype.encoders) == [ENCODER] and genotype.encoders[ENCODER].model == TINY
    kinds = [n.encoder is not None for n in genotype.network.nodes]
    assert kinds == sorted(kinds, reverse=True) and sum(kinds) == 4
    lower(genotype)  # a valid spec


def test_a_frozen_encoder_is_no_weight_of_the_search_and_keeps_its_statistics():
    stage = resolve_config("smoke").path
    frozen = SearchEncoder(model=TINY, levels=LEVELS.levels, freeze=True)
    model = PathSupernet(stand_in_cell(2, ("sep_conv_3x3",)), stage, 9, frozen).train()
    encoder = set(map(id, model.net.encoders.parameters()))
    assert encoder and not encoder & set(map(id, model.weight_parameters()))
    assert not any(m.training for m in model.net.encoders.modules())
    before = {k: v.clone() for k, v in model.net.encoders.state_dict().items()}
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(torch.equal(before[k], v) for k, v in model.net.encoders.state_dict().items())  # BN stats too


def test_bad_encoder_requests_are_one_line_before_torch_work(run_cli, tmp_path):
    with pytest.raises(ZooError, match="--freeze-encoder goes with --encoder"):
        rspnet_request(budget="smoke", freeze_encoder=True)
    with pytest.raises(ZooError, match="is not a timm model name"):
        rspnet_request(budget="smoke", encoder="MobileNet-V3")
    assert rspnet_request(budget="smoke", encoder=TINY).name != rspnet_request(budget="smoke").name
    run_dir = tmp_path / "run"
    code, _, err = run_cli(
        "search", "--stage", "both", "--budget", "smoke", "--encoder", "mobilenetv3_smal_050", "--run-dir",
        str(run_dir), "--no-progress",
    )  # fmt: skip
    assert code == 2
    assert err.splitlines()[-1] == (
        "rspnet-zoo: error: --encoder mobilenetv3_smal_050: timm knows no such model (did you mean "
        "mobilenetv3_small_050, mobilenetv3_small_100, mobilenetv3_small_075?)"
    )
    assert not list(run_dir.glob("checkpoint-*"))


@pytest.mark.slow  # two supernets over a timm encoder: seconds
def test_a_smoke_search_over_an_encoder_emits_a_spec_that_builds(run_cli, tmp_path):
    out = tmp_path / "found.json"
    code, _, err = run_cli(
        "search", "--stage", "both", "--budget", "smoke", "--encoder", TINY, "--freeze-encoder", "--out", str(out),
        "--run-dir", str(tmp_path / "run"), "--no-progress", "--json",
    )  # fmt: skip
    assert code == 0, err
    genotype = load_spec(out)
    first = genotype.network.nodes[0]
    assert first.encoder == ENCODER and genotype.encoders[ENCODER].model == TINY
    assert "--encoder mobilenetv3_small_050 --freeze-encoder" in genotype.provenance.command
    assert "over the timm encoder mobilenetv3_small_050" in genotype.provenance.notes
    model = GenotypeNet(genotype).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 45, 61)).shape == (1, genotype.defaults.num_classes, 45, 61)
    record = json.loads((tmp_path / "run" / "run-record.json").read_text())
    assert record["settings"]["encoder"] == TINY and record["settings"]["freeze_encoder"] is True


def test_the_latency_term_prices_the_lattice_over_the_encoder(monkeypatch, tmp_path):
    """Every unit counts 1 ms (the bookkeeping, not the clock): the encoder is one fixed unit, and the expected
    latency under uniform attention lies between the cheapest network the lattice can emit and the full one."""
    from rspnet_zoo.perf import latency as lat
    from searchers.rspnet.latency_search import LatencyGoal, config_lattice, fastest_ms, space_genotypes

    monkeypatch.setattr(lat, "_prepared", lambda module, inputs, target, image=False: lambda: 1.0)
    monkeypatch.setattr(lat, "time_unit", lambda run, *timing, **options: run())
    config = resolve_config("smoke").model_copy(update=dict(encoder=LEVELS))
    table = lat.open_table(lat.Target(size=(32, 32)), path=tmp_path / "t.json")
    full = space_genotypes(config, 9)[0]
    assert full.network.nodes[0].encoder == ENCODER and table.predict(full) > 0
    model = PathSupernet(stand_in_cell(config.cell.steps, ("sep_conv_3x3",)), config.path, 9, LEVELS)
    assert [n.id for n in model.lattice] == [n.id for n in config_lattice(config)]
    cell = stand_in_cell(config.cell.steps, ("sep_conv_3x3",))
    expected = LatencyGoal(table, 1.0).path_penalty(config, cell, 9, model)
    expected()
    assert fastest_ms(table, config, 9) <= expected.last_ms <= table.predict(full)
