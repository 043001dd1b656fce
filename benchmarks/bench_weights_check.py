"""The cost of the integrity check (tensor sha256 + finite check) when a zoo model loads its weights.

Builds the spec once into a temporary zoo home, then times ``timm.create_model(name, pretrained=True)``
with the check (as shipped) and without it (only the metadata's genotype sha read, as before the check
existed), interleaved, and prints medians of wall and CPU time, their ratio and the load average.
It also times the check alone (``read_weights``) beside ``safetensors.torch.load_file``, which maps the
file lazily: its bytes are read later, when the model copies them in.

    .venv/bin/python benchmarks/bench_weights_check.py                       # autodeeplab_l, ~44M parameters
    .venv/bin/python benchmarks/bench_weights_check.py --name darts_v2_imagenet --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import timm
from safetensors import safe_open
from safetensors.torch import load_file

from rspnet_zoo.zoo import registry as zoo
from rspnet_zoo.zoo.folder import build_folder
from rspnet_zoo.zoo.stats import count_parameters
from rspnet_zoo.zoo.weights import read_weights


def metadata_only(file: Path):
    with safe_open(str(file), framework="pt") as f:
        return {}, dict(f.metadata() or {})


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="autodeeplab_l")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["RSPNET_ZOO_HOME"] = home
        folder, info = build_folder(zoo.SHIPPED[args.name], Path(home))
        file = folder / "model.safetensors"
        print(f"{args.name}: {info['parameters']:,} parameters, {file.stat().st_size / 2**20:.1f} MiB of weights")

        def load() -> None:
            assert count_parameters(timm.create_model(args.name, pretrained=True)) == info["parameters"]

        def load_unchecked() -> None:
            with mock.patch.object(zoo, "read_weights", metadata_only):
                load()

        contenders = {
            "create_model, checked": load,
            "create_model, unchecked": load_unchecked,
            "read_weights (check)": lambda: read_weights(file),
            "load_file (lazy mmap)": lambda: load_file(str(file)),
        }
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
        for fn in contenders.values():  # warm the page cache and the allocator
            fn()
        for _ in range(args.repeats):
            for key, fn in contenders.items():
                times[key].append(timed(fn))
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, {args.repeats} interleaved repeats")
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    for key, (wall, cpu) in med.items():
        print(f"  {key:26s} wall {wall * 1e3:8.1f} ms   cpu {cpu * 1e3:8.1f} ms")
    checked, unchecked = med["create_model, checked"][0], med["create_model, unchecked"][0]
    print(f"check on load: +{(checked - unchecked) * 1e3:.1f} ms, checked/unchecked = {checked / unchecked:.2f}")


if __name__ == "__main__":
    main()
