"""bench: the JSON a script reads, the interleaved measurement behind it, and the cached spec files."""

import json
import os
import shutil
import warnings

import pytest
import torch

from rspnet_zoo.perf.bench import build_times, peak_memory_cpu
from rspnet_zoo.resources import shipped_specs
from rspnet_zoo.zoo.registry import resolve_genotype

ROW_KEYS = {
    "name", "runtime", "optimized", "parameters", "flops", "gmac", "ms_median", "ms_p90", "ms_per_image",
    "cpu_ms_median", "images_per_s", "peak_memory_mb", "gflops_per_s", "peak_fraction", "latency_ratio", "speedup",
}  # fmt: skip


def test_bench_json_compares_models_interleaved(run_cli):
    code, out, err = run_cli(
        "bench", "rspnet_small", "--size", "32x48", "--rounds", "2", "--optimize",
        "--compare", "lraspp_mobilenet_v3_large", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["input"] == [1, 3, 32, 48] and result["rounds"] == 2 and result["threads"] == 2
    assert result["matmul_peak_gflops_per_s"] > 0 and len(result["load_average"]["before"]) == 3
    first, peer = result["models"]
    assert set(first) == ROW_KEYS and first["name"] == "rspnet_small" and first["optimized"]
    assert first["latency_ratio"] == 1.0 and peer["name"] == "lraspp_mobilenet_v3_large"
    assert first["parameters"] < peer["parameters"]
    assert first["peak_memory_mb"] > 0 and first["flops"] == 2 * first["gmac"] * 1e9
    assert peer["speedup"] == pytest.approx(first["ms_median"] / peer["ms_median"])


def test_bench_in_onnxruntime(run_cli):
    code, out, err = run_cli("bench", "rspnet_small", "--size", "32x48", "--rounds", "1", "--runtime", "onnxruntime",
                             "--json")  # fmt: skip
    assert code == 0, err
    (row,) = json.loads(out)["models"]
    assert row["runtime"] == "onnxruntime" and row["ms_median"] > 0 and row["peak_memory_mb"] is None


def test_bench_on_cpu_writes_nothing_to_stderr_but_its_own_lines(capfd):
    """No CUDA query, profiler log or deprecation where --device is cpu: only rspnet-zoo's one-line warnings."""
    from rspnet_zoo.cli.app import main

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        with pytest.raises(SystemExit) as exit_:
            main(["bench", "rspnet_small", "--size", "32x48", "--rounds", "1", "--json"])
    assert exit_.value.code == 0
    err = capfd.readouterr().err
    assert all(line.startswith("rspnet-zoo: warning: ") for line in err.splitlines()), err


def test_peak_memory_counts_the_tensors_alive_together():
    x = torch.zeros(256, 1024)  # 1 MiB
    weight = torch.ones(1024)  # 4 KiB, alive before the call

    def run(t):
        doubled = t * weight  # alive while the next op runs
        return doubled + 1

    assert peak_memory_cpu(run, x, held=[weight]) == 3 * x.nbytes + weight.nbytes
    assert peak_memory_cpu(lambda t: t.view(-1).sum(), x) == x.nbytes + 4  # a view is the same storage


@pytest.mark.parametrize(
    "args, words",
    [
        (["nope_model"], "nope_model"),
        (["rspnet_small", "--runtime", "tvm"], "tvm"),
        (["rspnet_small", "--size", "0x3"], "--size"),
    ],
)
def test_bench_bad_input_is_one_line(run_cli, args, words):
    code, _, err = run_cli("bench", *args)
    assert code == 2 and words in err and "Traceback" not in err


def test_spec_files_are_read_once_per_version(tmp_path):
    spec = tmp_path / "rspnet_small.json"
    shutil.copy(shipped_specs()[0].parent / "rspnet_small.json", spec)
    first = resolve_genotype(str(spec))
    assert resolve_genotype(str(spec)) is first
    spec.write_text(spec.read_text().replace('"name": "rspnet_small"', '"name": "rspnet_tiny"'))
    os.utime(spec, ns=(0, os.stat(spec).st_mtime_ns + 1_000_000))
    assert resolve_genotype(str(spec)).name == "rspnet_tiny"


def test_build_times_split_spec_handling_from_building(monkeypatch):
    """Resolving and building each advance a fake clock by a known amount (and still run for real), so the
    split is checked exactly and no assertion rests on this shared machine's clock."""
    import time

    import timm

    from rspnet_zoo.zoo import registry as zoo

    clock = [0.0]

    def ticking(call, seconds):
        def wrapped(*args, **kwargs):
            clock[0] += seconds
            return call(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(zoo, "resolve_genotype", ticking(zoo.resolve_genotype, 0.001))
    monkeypatch.setattr(timm, "create_model", ticking(timm.create_model, 0.005))
    times = build_times(["rspnet_small"], repeats=2)["rspnet_small"]
    assert times["resolve_ms"] == pytest.approx(1.0) and times["build_ms"] == pytest.approx(5.0)
    assert times["total_ms"] == pytest.approx(times["resolve_ms"] + times["build_ms"])
