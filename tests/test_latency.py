"""The latency model: a prediction sums every unit the compiled network calls, the table is cached per
device fingerprint and reloaded, a stale one is measured again; a `--latency-target` search emits a spec
predicted below the target that validates and builds; a table of each runtime times its units in that
runtime. Timing is replaced by a deterministic cost where the bookkeeping is checked, and never asserted
where units are really timed (benchmarks/latency_model.py checks the figures)."""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from rspnet_zoo import GenotypeNet, load_spec
from rspnet_zoo.data.synthetic import NUM_CLASSES
from rspnet_zoo.nn.ops import FactorizedReduce, ReLUConvBN, SepConv
from rspnet_zoo.perf import latency as lat
from rspnet_zoo.zoo.registry import resolve_genotype
from searchers.rspnet.budgets import resolve_config
from searchers.rspnet.latency_search import LatencyPenalty, open_goal, space_genotypes

SIZE = (32, 64)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
WEIGHTS = {SepConv: 1.0, ReLUConvBN: 1000.0, FactorizedReduce: 1e6}


def counted_cost(module: nn.Module) -> float:
    """A cost that counts the separable convs, path projections and factorized reductions a unit holds."""
    return sum(w for m in module.modules() for t, w in WEIGHTS.items() if type(m) is t)


def expected_cost(model: nn.Module) -> float:
    return sum(w for m in model.modules() for t, w in WEIGHTS.items() if type(m) is t)


def fake_timing(monkeypatch, cost) -> None:
    """A unit (or network) made ready for its runtime returns ``cost(module)`` when called, and timing
    a call returns what it returns."""
    monkeypatch.setattr(lat, "_prepared", lambda module, inputs, target, image=False: lambda: cost(module))
    monkeypatch.setattr(lat, "time_unit", lambda run, *timing, **options: run())


@pytest.fixture
def calls(monkeypatch):
    """Count the units timed; each costs ``counted_cost``."""
    count = []

    def cost(module):
        count.append(1)
        return counted_cost(module)

    fake_timing(monkeypatch, cost)
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
    assert timed == len(units) == len(table.entries) and len(calls) == lat.PASSES * timed
    doc = json.loads(file.read_text())
    assert doc["fingerprint"] == target.fingerprint()
    assert doc["provenance"]["command"] == "cmd" and doc["provenance"]["torch"] == torch.__version__

    calls.clear()
    again, timed = lat.profile(target, genotypes, path=file)
    assert (timed, len(calls)) == (0, 0)  # reloaded, nothing timed
    assert again.entries == table.entries

    monkeypatch.setattr(lat, "cpu_model", lambda: "another CPU")
    stale, timed = lat.profile(target, genotypes, path=file)
    assert timed == len(units) and len(calls) == lat.PASSES * timed  # measured again
    assert json.loads(file.read_text())["fingerprint"]["cpu"] == "another CPU"

    calls.clear()
    other = lat.Target(threads=2, size=SIZE)  # another thread count: another table, not this one
    lat.profile(other, genotypes, path=file)
    assert len(calls) == lat.PASSES * len(units)


def test_each_unit_keeps_the_median_of_its_sweeps_so_a_slow_spell_drops_out(monkeypatch, tmp_path):
    """Timed in sweeps over all units, a unit keeps its median: one sweep in a slow spell (10x) leaves
    no trace in the table."""
    sweeps = iter([1.0, 2.0, 10.0, 20.0, 1.2, 2.2])  # units a, b in sweep 1, both slow in 2, sweep 3
    monkeypatch.setattr(lat, "_prepared", lambda module, inputs, target, image=False: None)
    monkeypatch.setattr(lat, "time_unit", lambda run, *timing, **options: next(sweeps))
    table = lat.open_table(lat.Target(size=SIZE), path=tmp_path / "table.json")
    units = [lat.Unit("concat", (((4, 8, 8), (4, 8, 8)),)), lat.Unit("concat", (((2, 8, 8), (2, 8, 8)),))]
    assert table.passes == 3 and table.measure(units) == 2
    assert [table.entries[u.key] for u in units] == [1.2, 2.2]


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
    from rspnet_zoo.spec.plan import lower

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


@pytest.mark.parametrize("base_ms", [60.0, 150.0])
def test_the_penalty_prices_latency_below_the_target_only_with_a_price(base_ms):
    """The hinge alone has no gradient below the target (there the search drifted to slow cells of pools);
    the price's gradient is price / E per ms at any latency; above the target the hinge adds weight / T."""
    x = torch.zeros((), requires_grad=True)

    def slope(weight: float, price: float) -> float:
        (grad,) = torch.autograd.grad(LatencyPenalty(lambda: base_ms + 10 * x, 100.0, weight, price)(), x)
        return float(grad)

    hinge = 2.0 * 10 / 100 if base_ms > 100 else 0.0
    assert slope(2.0, 0.0) == pytest.approx(hinge)
    assert slope(2.0, 0.5) == pytest.approx(hinge + 0.5 * 10 / base_ms)
    assert slope(0.0, 0.5) == pytest.approx(0.5 * 10 / base_ms)


def test_latency_target_search_emits_a_spec_predicted_below_the_target(monkeypatch, run_cli, tmp_path):
    """The must-show smoke search: the target lies between the widest and the narrowest network the
    space holds, so the penalty and the width fit have something to do. A unit costs its parameters
    (a thousand per ms), so width matters."""
    fake_timing(monkeypatch, lambda module: 0.01 + sum(p.numel() for p in module.parameters()) / 1e3)
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


def test_a_target_below_what_the_space_can_emit_is_warned_before_the_search(monkeypatch, run_cli, tmp_path):
    """The plan profiles the space first (saying how much, with progress), then warns, before the first
    step, that no network of the space can meet the target; the bound it warns with is below every network
    the space holds and below what the search emits."""
    fake_timing(monkeypatch, lambda module: 0.01 + sum(p.numel() for p in module.parameters()) / 1e3)
    args = ("search", "--budget", "smoke", "--size", "32x64", "--threads", "1", "--run-dir", str(tmp_path / "run"))
    code, stdout, stderr = run_cli(*args, "--latency-target", "0.5", "--out", str(tmp_path / "s.json"))
    assert code == 0, stderr
    lines = stderr.splitlines()
    profile = next(i for i, line in enumerate(lines) if line.startswith("  latency profile of the search space"))
    assert "at 1x3x32x64, 1 thread: first, " in lines[profile] and "units to time in 3 sweeps" in lines[profile]
    assert any(line.startswith("latency profile: units ") for line in lines[profile:])
    warning = next(i for i, line in enumerate(lines) if line.startswith("warning: the latency target 0.5 ms"))
    first_step = next(i for i, line in enumerate(lines) if line.startswith("cell search: "))
    assert profile < warning < first_step
    fastest = float(lines[warning].split("(at least ")[1].split(" ms")[0])
    config = resolve_config("smoke")
    table = lat.load_table(lat.Target(threads=1, size=SIZE))
    assert fastest <= min(table.predict(g) for g in space_genotypes(config, NUM_CLASSES)) + 0.05
    assert table.predict(load_spec(tmp_path / "s.json")) >= fastest - 0.05  # .05: the warning's rounding
    again = run_cli(*args, "--latency-target", "0.5", "--out", str(tmp_path / "t.json"), "--force")[2]
    assert "  latency profile of the search space at 1x3x32x64, 1 thread: cached (" in again


# ---- runtimes: a table measured in a runtime times its units there


@pytest.fixture
def runtime_calls(monkeypatch):
    """Record each call of ``rspnet_zoo.nn.fold`` and of ``bench.onnx_session``, which still run."""
    calls = []
    for module_name, name in (("rspnet_zoo.nn.fold", "optimize"), ("rspnet_zoo.perf.bench", "onnx_session")):
        module = importlib.import_module(module_name)
        real = getattr(module, name)

        def spy(*args, real=real, name=name, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    return calls


def _output(out) -> torch.Tensor:
    """A unit's output as a tensor: onnxruntime returns a list of numpy arrays."""
    return torch.from_numpy(out[0]) if isinstance(out, list) else out


@pytest.mark.parametrize("runtime", ["optimized", "onnxruntime"])
def test_every_kind_of_unit_runs_in_the_runtime_and_computes_what_eager_does(runtime, runtime_calls):
    genotype = resolve_genotype("rspnet_small")
    units = {p.unit.kind: p.unit for p in lat.plan_units(lat.lower(genotype), genotype, SIZE)}
    target = lat.Target(runtime=runtime, threads=1, size=SIZE)
    for kind, unit in units.items():
        torch.manual_seed(0)
        module, inputs = lat.UNITS[kind](*unit.args)
        for m in module.modules():  # running statistics that make a BN fold change the weights
            if isinstance(m, nn.BatchNorm2d) and m.running_var is not None:
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        with torch.no_grad():
            expected = module.eval()(*inputs)
        runtime_calls.clear()
        run = lat._prepared(module, inputs, target)
        with torch.no_grad():
            out = run()
        assert runtime_calls == (["optimize"] if runtime == "optimized" else ["optimize", "onnx_session"]), kind
        if runtime == "onnxruntime":
            assert isinstance(out, list) and isinstance(out[0], np.ndarray), kind  # the session's output
        torch.testing.assert_close(_output(out), expected, atol=1e-4, rtol=1e-4, msg=kind)


@pytest.fixture
def runs_once(monkeypatch):
    """Timing that runs the prepared call once, for real, and reports 1 ms: what runs is checked, never the clock."""
    runs = []

    def run_once(run, *timing, **options):
        runs.append(run())
        return 1.0

    monkeypatch.setattr(lat, "time_unit", run_once)
    return runs


@pytest.mark.parametrize(  # onnxruntime exports every unit: seconds, `pytest -m slow`
    "runtime", [pytest.param(r, marks=pytest.mark.slow) if r == "onnxruntime" else r for r in lat.RUNTIMES]
)
def test_a_table_of_each_runtime_predicts_a_shipped_spec_from_units_timed_there(runtime, zoo_home, runs_once):
    genotype = resolve_genotype("rspnet_small")
    target = lat.Target(runtime=runtime, threads=1, size=SIZE)
    table = lat.open_table(target)
    units = [p.unit for p in lat.plan_units(lat.lower(genotype), genotype, SIZE)]
    timed = table.measure(units)
    assert timed == len({u.key for u in units}) and len(runs_once) == table.passes * timed  # each run in its runtime
    table.save()
    assert all(table.entries[u.key] == 1.0 for u in units)
    assert table.predict(genotype) == pytest.approx(len(units))  # one entry per unit the plan calls
    doc = json.loads((zoo_home / "latency" / target.file_name).read_text())
    assert runtime in target.file_name and doc["fingerprint"]["runtime"] == runtime
    assert doc["units"] == len(table.entries)


@pytest.mark.parametrize("runtime", ["optimized", "onnxruntime"])
def test_a_whole_network_is_measured_in_the_table_runtime(runtime, runtime_calls, runs_once):
    target = lat.Target(runtime=runtime, threads=1, size=SIZE)
    assert lat.measure_model(GenotypeNet(resolve_genotype("rspnet_small")), target) == 1.0
    assert runtime_calls == (["optimize"] if runtime == "optimized" else ["optimize", "onnx_session"])
    assert len(runs_once) == 1  # the network ran once, through that runtime


def test_each_runtime_keeps_its_own_table(calls, zoo_home):
    genotypes = [resolve_genotype("rspnet_small")]
    for runtime in lat.RUNTIMES:
        lat.profile(lat.Target(runtime=runtime, threads=1, size=SIZE), genotypes)
    files = sorted((zoo_home / "latency").iterdir())
    assert len(files) == len(lat.RUNTIMES)
    assert {json.loads(f.read_text())["fingerprint"]["runtime"] for f in files} == set(lat.RUNTIMES)
    calls.clear()
    lat.profile(lat.Target(runtime="optimized", threads=1, size=SIZE), genotypes)
    assert not calls  # reloaded from its own file


def test_an_unknown_runtime_or_a_missing_onnxruntime_is_one_line(run_cli, monkeypatch, zoo_home):
    code, out, err = run_cli("latency", "predict", "rspnet_small", "--runtime", "tvm", "--size", "32x64")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "'tvm'" in err and all(r in err for r in lat.RUNTIMES)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an import of a missing package finds
    code, out, err = run_cli("latency", "profile", "--budget", "smoke", "--runtime", "onnxruntime", "--size", "32x64")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "onnxruntime is not installed" in err
    assert not (zoo_home / "latency").exists()  # nothing written
