"""The latency model: a prediction sums every unit the compiled network calls, the table is cached per
device fingerprint and reloaded, a stale one is measured again; a `--latency-target` search emits a spec
predicted below the target that validates and builds. Timing is replaced by a deterministic cost, so
these tests check the bookkeeping, never the clock (benchmarks/latency_model.py checks the figures)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rspnet_zoo import GenotypeNet, load_spec
from rspnet_zoo import latency as lat
from rspnet_zoo.data.synthetic import NUM_CLASSES
from rspnet_zoo.ops import FactorizedReduce, ReLUConvBN, SepConv
from rspnet_zoo.zoo import resolve_genotype
from searchers.budgets import resolve_config
from searchers.latency_search import open_goal, space_genotypes

SIZE = (32, 64)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
WEIGHTS = {SepConv: 1.0, ReLUConvBN: 1000.0, FactorizedReduce: 1e6}


def counted_cost(module: nn.Module, *timing) -> float:
    """A cost that counts the separable convs, path projections and factorized reductions a unit holds."""
    return sum(w for m in module.modules() for t, w in WEIGHTS.items() if type(m) is t)


def expected_cost(model: nn.Module) -> float:
    return sum(w for m in model.modules() for t, w in WEIGHTS.items() if type(m) is t)


@pytest.fixture
def calls(monkeypatch):
    """Count the units timed; each costs ``counted_cost``."""
    count = []

    def fake(module, *timing):
        count.append(1)
        return counted_cost(module)

    monkeypatch.setattr(lat, "time_unit", fake)
    return count


@pytest.mark.parametrize("name", ["rspnet_small", "rspnet_c", "nas_segm_arch0"])
def test_prediction_sums_every_op_and_path_of_the_compiled_network(name, calls, tmp_path):
    genotype = resolve_genotype(name)
    table = lat.open_table(lat.Target(size=SIZE), path=tmp_path / "t.json")
    # every separable conv, path projection and factorized reduction the built network holds, once each
    assert table.predict(genotype) == expected_cost(GenotypeNet(genotype))


def test_changing_one_op_changes_the_prediction_by_that_op_in_every_cell_instance(calls, tmp_path):
    genotype = resolve_genotype("rspnet_small")
    table = lat.open_table(lat.Target(size=SIZE), path=tmp_path / "t.json")
    before = table.predict(genotype)
    (name, cell), *_ = genotype.cells.items()
    step = cell.steps[0]
    edge = step.edges[0].model_copy(
        update=dict(op="sep_conv_3x3" if step.edges[0].op != "sep_conv_3x3" else "skip_connect")
    )
    steps = [step.model_copy(update=dict(edges=[edge, *step.edges[1:]])), *cell.steps[1:]]
    changed = genotype.model_copy(update=dict(cells={name: cell.model_copy(update=dict(steps=steps))}))
    instances = sum(n.cell == name for n in genotype.network.nodes)
    delta = instances if edge.op == "sep_conv_3x3" else -instances
    assert instances > 1
    assert table.predict(changed) - before == pytest.approx(delta)


def test_the_table_is_cached_reloaded_and_a_stale_fingerprint_is_measured_again(calls, tmp_path, monkeypatch):
    genotypes = [resolve_genotype("rspnet_small")]
    target = lat.Target(threads=1, size=SIZE)
    file = tmp_path / "table.json"
    table, timed = lat.profile(target, genotypes, "cmd", path=file)
    units = {p.unit.key for p in lat.plan_units(lat.lower(genotypes[0]), genotypes[0], SIZE)}
    assert timed == len(calls) == len(units) == len(table.entries)
    doc = json.loads(file.read_text())
    assert doc["fingerprint"] == target.fingerprint()
    assert doc["provenance"]["command"] == "cmd" and doc["provenance"]["torch"] == torch.__version__

    calls.clear()
    again, timed = lat.profile(target, genotypes, path=file)
    assert (timed, len(calls)) == (0, 0)  # reloaded, nothing timed
    assert again.entries == table.entries

    monkeypatch.setattr(lat, "cpu_model", lambda: "another CPU")
    stale, timed = lat.profile(target, genotypes, path=file)
    assert timed == len(calls) == len(units)  # measured again
    assert json.loads(file.read_text())["fingerprint"]["cpu"] == "another CPU"

    calls.clear()
    other = lat.Target(threads=2, size=SIZE)  # another thread count: another table, not this one
    lat.profile(other, genotypes, path=file)
    assert len(calls) == len(units)


def test_a_prediction_times_only_the_units_the_table_lacks_and_keeps_them(calls, tmp_path):
    target = lat.Target(size=SIZE)
    lat.profile(target, [resolve_genotype("rspnet_small")])
    calls.clear()
    table = lat.open_table(target)
    table.predict(resolve_genotype("rspnet_c"))
    timed = len(calls)
    assert timed > 0
    calls.clear()
    lat.open_table(target).predict(resolve_genotype("rspnet_c"))
    assert not calls  # saved beside the profile


def test_calibration_adds_one_measured_overhead_to_every_unit(calls, tmp_path, monkeypatch):
    """A network measured at its units' sum plus 0.5 ms a unit gives an overhead of 0.5 ms, which every
    later prediction adds once per unit, and which the saved table keeps."""
    from rspnet_zoo.plan import lower

    def units(genotype):
        return len(lat.plan_units(lower(genotype), genotype, SIZE))

    measured = []
    monkeypatch.setattr(
        lat,
        "measure_model",
        lambda model, target, *_: measured.append(1) or expected_cost(model) + 0.5 * units(model.genotype),
    )
    small, c = resolve_genotype("rspnet_small"), resolve_genotype("rspnet_c")
    table = lat.open_table(lat.Target(size=SIZE), path=tmp_path / "t.json")
    assert table.calibrate([small], rounds=3) == pytest.approx(0.5)
    assert len(measured) == 3
    assert table.predict(c) == pytest.approx(expected_cost(GenotypeNet(c)) + 0.5 * units(c))
    table.save()
    assert lat.load_table(table.target, tmp_path / "t.json").overhead_ms == pytest.approx(0.5)


def test_latency_target_search_emits_a_spec_predicted_below_the_target(monkeypatch, run_cli, tmp_path):
    """The must-show smoke search: the target lies between the widest and the narrowest network the
    space holds, so the penalty and the width fit have something to do. A unit costs its parameters
    (a thousand per ms), so width matters."""
    monkeypatch.setattr(lat, "time_unit", lambda module, *_: 0.01 + sum(p.numel() for p in module.parameters()) / 1e3)
    config = resolve_config("smoke")
    space = space_genotypes(config, NUM_CLASSES)
    table = open_goal(1.0, SIZE, config, NUM_CLASSES).table  # profiled and calibrated, as the search will find it
    assert table.target.threads == 1 and table.path.is_file()
    narrowest = max(table.predict(g) for g in space[-1 :: -len(config.path.latency_widths)])
    widest = max(table.predict(g) for g in space)
    assert narrowest < widest
    target = round(narrowest, 3) + 0.001
    out = tmp_path / "fast.json"
    code, stdout, stderr = run_cli(
        "search",
        "--budget",
        "smoke",
        "--latency-target",
        str(target),
        "--size",
        "32x64",
        "--threads",
        "1",
        "--out",
        str(out),
        "--run-dir",
        str(tmp_path / "run"),
        "--no-progress",
        "--json",
    )
    assert code == 0, stderr
    report = json.loads(stdout)["latency"]
    genotype = load_spec(out)
    assert report["predicted_ms"] == pytest.approx(table.predict(genotype), abs=1e-3)
    assert report["predicted_ms"] <= target
    assert report["target_ms"] == target and report["fingerprint"] == table.fingerprint_id
    assert "latency target" in genotype.provenance.notes and report["fingerprint"] in genotype.provenance.notes
    code, _, stderr = run_cli("validate", str(out))
    assert code == 0, stderr
    model = GenotypeNet(genotype).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *SIZE)).shape == (1, genotype.defaults.num_classes, *SIZE)
