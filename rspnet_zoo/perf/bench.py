"""Inference speed, measured so that models can be compared on a shared, noisy machine.

Contenders run **interleaved**: every round calls each of them once, in a rotating order, so a change
of load hits all of them alike; the figures are medians and 90th percentiles over rounds, and the
ratios to the first contender are what to read. Each contender reports parameters, FLOPs
(``torch.utils.flop_counter``), wall and CPU time per call, images/s, peak memory (the tensors alive,
counted op by op, on CPU in eager mode; the allocator's high-water mark on CUDA; none for a compiled or
ONNX graph on CPU) and achieved GFLOP/s as a fraction of the
fp32 matmul peak measured in the same run. The load average is printed beside the figures. The
process keeps the memory it frees (``rspnet_zoo.perf.memory``), as one that serves a model should.
"""

from __future__ import annotations

import functools
import os
import statistics
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from rspnet_zoo.errors import ZooError
from rspnet_zoo.perf.memory import allocator, keep_freed_memory
from rspnet_zoo.perf.timer import benchmark_timer
from rspnet_zoo.zoo.stats import count_flops, count_parameters

RUNTIMES = ("eager", "compile", "onnxruntime", "openvino")
MATMUL_SIZE = 1024


@dataclass
class Contender:
    """One model in one runtime: ``run`` takes the input batch (a CPU tensor) and returns its output."""

    name: str
    runtime: str
    optimized: bool
    run: Callable[[torch.Tensor], Any]
    parameters: int
    flops: int
    memory: Callable[[torch.Tensor], int | None] = field(repr=False, default=lambda x: None)

    @property
    def label(self) -> str:
        return f"{self.name} [{self.runtime}{', optimized' if self.optimized else ''}]"


def load_model(ref: str, num_classes: int | None = None) -> nn.Module:
    """A zoo name or spec file, a torchvision segmentation model or any timm model, untrained, in eval mode."""
    import timm
    import torchvision

    from rspnet_zoo.zoo.catalog import SHIPPED
    from rspnet_zoo.zoo.registry import create_genotype_net, resolve_genotype

    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if ref in SHIPPED or ref.endswith(".json") or "/" in ref:
        genotype = resolve_genotype(ref)
        return create_genotype_net(genotype.name, genotype, **kwargs).eval()
    if ref in torchvision.models.list_models(module=torchvision.models.segmentation):
        return torchvision.models.get_model(ref, weights=None, weights_backbone=None, **kwargs).eval()
    if timm.is_model(ref):
        return timm.create_model(ref, **kwargs).eval()
    raise ZooError(f"unknown model '{ref}': not a zoo name, spec file, torchvision segmentation model or timm model")


def matmul_peak_gflops(threads: int, device: torch.device) -> float:
    """fp32 GFLOP/s of a square matmul: the ceiling a convolution network is measured against."""

    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device)
    timer = benchmark_timer()("a @ b", globals=dict(a=a, b=b), num_threads=threads)
    return 2 * MATMUL_SIZE**3 / timer.blocked_autorange(min_run_time=0.5).median / 1e9


class LiveTensors(TorchDispatchMode):
    """Bytes of the tensor storages alive, and their peak: every tensor an op reads or writes is counted
    from then until it is freed (the storage's weak reference dies). Tensors alive before (weights, the
    input) count once ``track`` has been given them."""

    def __init__(self) -> None:
        super().__init__()
        self._alive: dict[int, weakref.ref] = {}
        self.bytes = self.peak = 0

    def track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key not in self._alive:
            size = storage.nbytes()
            self._alive[key] = weakref.ref(storage, functools.partial(self._freed, key, size))
            self.bytes += size
            self.peak = max(self.peak, self.bytes)

    def _freed(self, key: int, size: int, _: weakref.ref) -> None:
        self._alive.pop(key, None)
        self.bytes -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten((args, kwargs, out))[0]:
            if isinstance(value, torch.Tensor):
                self.track(value)
        return out


def peak_memory_cpu(run: Callable[[torch.Tensor], Any], x: torch.Tensor, held: Iterable[torch.Tensor] = ()) -> int:
    """Peak bytes of the tensors alive during one call: ``held`` (the weights) and the input, the activations
    and the output. Counted op by op (``LiveTensors``), without the profiler: its memory timeline is
    deprecated and it queries every accelerator, printing to stderr where there is none."""
    live = LiveTensors()
    for tensor in (*held, x):
        live.track(tensor)
    with torch.no_grad(), live:
        run(x)
    return live.peak


def peak_memory_cuda(run: Callable[[torch.Tensor], Any], x: torch.Tensor) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        run(x)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def onnx_session(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    threads: int,
    device: torch.device,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> Any:
    """``model`` exported to ONNX (traced on ``inputs``, which name the graph's inputs) and loaded in an
    onnxruntime session of ``threads`` intra-op threads on ``device``: how every ONNX timing here runs.

    Its threads block instead of spinning when idle (``runtime.session_options``): onnxruntime's default
    spin-wait after a run keeps the cores busy and slows whatever runs next (the next contender of an
    interleaved round, another session); docs/benchmarks.md has the measurement."""
    from rspnet_zoo.interop.export import onnx_export
    from rspnet_zoo.predict.runtime import providers_for, require, session_options

    onnxruntime = require("onnxruntime")

    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "model.onnx"
        onnx_export(model, inputs, file, ["output"], dynamic_axes)
        return onnxruntime.InferenceSession(str(file), session_options(threads), providers=providers_for(device))


def _onnxruntime(model: nn.Module, x: torch.Tensor, threads: int, device: torch.device) -> Callable:
    """The model exported to ONNX (dynamic batch and size) and run by an onnxruntime session."""
    dynamic = {"image": {0: "batch", 2: "height", 3: "width"}}
    session = onnx_session(model, {"image": x}, threads, device, dynamic)
    return lambda t: session.run(None, {"image": t.numpy()})


def _openvino(model: nn.Module, x: torch.Tensor, threads: int, device: torch.device) -> Callable:
    """The model exported to ONNX (dynamic batch and size) and compiled by OpenVINO."""
    from rspnet_zoo.interop.export import onnx_export
    from rspnet_zoo.predict.runtime import OpenVinoRunner

    dynamic = {"image": {0: "batch", 2: "height", 3: "width"}}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "model.onnx"
        onnx_export(model, {"image": x}, file, ["output"], dynamic)
        return OpenVinoRunner(file, threads=threads, device=device)


def prepare(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    *,
    runtime: str = "eager",
    optimized: bool = False,
    threads: int = 2,
    device: torch.device | str = "cpu",
) -> Contender:
    """A contender ready to time: ``model`` optimised (``rspnet_zoo.nn.fold``) if asked, in ``runtime``."""
    from rspnet_zoo.nn.fold import optimize

    if runtime not in RUNTIMES:
        raise ZooError(f"unknown runtime '{runtime}': one of {', '.join(RUNTIMES)}")
    device = torch.device(device)
    model = model.eval().to(device)
    parameters = count_parameters(model)
    flops = count_flops(model, tuple(x.shape[1:])) * x.shape[0]
    net = optimize(model) if optimized else model
    if runtime in ("onnxruntime", "openvino"):
        exported = (_onnxruntime if runtime == "onnxruntime" else _openvino)(net, x, threads, device)
        return Contender(name, runtime, optimized, exported, parameters, flops)
    if runtime == "compile":
        net = torch.compile(net)

    def run(t: torch.Tensor) -> Any:
        with torch.inference_mode():
            return net(t.to(device))

    if device.type == "cuda":
        memory = functools.partial(peak_memory_cuda, run)
    elif runtime == "eager":
        memory = functools.partial(peak_memory_cpu, run, held=[*net.parameters(), *net.buffers()])
    else:  # a compiled graph allocates outside the dispatcher, where LiveTensors cannot count
        return Contender(name, runtime, optimized, run, parameters, flops)
    return Contender(name, runtime, optimized, run, parameters, flops, memory=memory)


def prepare_file(
    file: str | Path,
    x: torch.Tensor,
    *,
    threads: int = 2,
    device: torch.device | str = "cpu",
    runtime: str = "onnxruntime",
) -> Contender:
    """An exported ONNX file (float or int8) as it is deployed, in ``runtime`` (``runtime.FILE_RUNTIMES``). Its
    parameters and FLOPs are those of the genotype it names (name and sha256 in its metadata); zero for a file
    naming none known here."""
    from rspnet_zoo.predict.runtime import file_runner

    runner = file_runner(file, runtime, threads=threads, device=device)
    runner.check_input(x.shape)
    parameters = flops = 0
    genotype = _genotype_of(runner.metadata)
    if genotype is not None:
        from rspnet_zoo.zoo.registry import create_genotype_net

        model = create_genotype_net(genotype.name, genotype, num_classes=runner.num_classes).eval()
        parameters, flops = count_parameters(model), count_flops(model, tuple(x.shape[1:])) * x.shape[0]
    return Contender(f"{Path(file).name} [{runner.precision}]", runner.runtime, False, runner, parameters, flops)


def _genotype_of(metadata: dict[str, str]) -> Any:
    """The genotype an export names, when this zoo resolves its name to a spec of the same sha256."""
    from rspnet_zoo.spec.io import spec_sha256
    from rspnet_zoo.zoo.registry import resolve_genotype

    try:
        genotype = resolve_genotype(metadata.get("name", ""))
    except ZooError:
        return None
    return genotype if spec_sha256(genotype) == metadata.get("genotype_sha256") else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(
    contenders: Sequence[Contender],
    x: torch.Tensor,
    *,
    rounds: int = 10,
    warmup: int = 2,
    threads: int = 2,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Time the contenders interleaved on the batch ``x``; the JSON-ready result (see the module docstring)."""
    if not contenders:
        raise ZooError("nothing to measure")
    device = torch.device(device)
    torch.set_num_threads(threads)
    keep_freed_memory()
    load_before = os.getloadavg()
    peak = matmul_peak_gflops(threads, device)
    for c in contenders:
        for _ in range(warmup):
            c.run(x)
    wall: list[list[float]] = [[] for _ in contenders]
    cpu: list[list[float]] = [[] for _ in contenders]
    for r in range(rounds):
        for k in range(len(contenders)):
            i = (k + r) % len(contenders)
            _sync(device)
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            contenders[i].run(x)
            _sync(device)
            wall[i].append(time.perf_counter() - start_wall)
            cpu[i].append(time.process_time() - start_cpu)
    batch = x.shape[0]
    rows = []
    for c, w, u in zip(contenders, wall, cpu):
        median = statistics.median(w)
        gflops = c.flops / median / 1e9
        memory = c.memory(x)
        rows.append(
            dict(
                name=c.name,
                runtime=c.runtime,
                optimized=c.optimized,
                parameters=c.parameters,
                flops=c.flops,
                gmac=c.flops / 2e9,
                ms_median=median * 1000,
                ms_p90=_quantile(w, 0.9) * 1000,
                ms_per_image=median * 1000 / batch,
                cpu_ms_median=statistics.median(u) * 1000,
                images_per_s=batch / median,
                peak_memory_mb=None if memory is None else memory / 2**20,
                gflops_per_s=gflops,
                peak_fraction=gflops / peak,
            )
        )
    first = rows[0]["ms_median"]
    for row in rows:
        row["latency_ratio"] = row["ms_median"] / first
        row["speedup"] = first / row["ms_median"]
    return dict(
        input=list(x.shape),
        threads=threads,
        device=str(device),
        rounds=rounds,
        torch=torch.__version__,
        allocator=allocator(),
        matmul_peak_gflops_per_s=peak,
        load_average=dict(before=list(load_before), after=list(os.getloadavg())),
        models=rows,
    )


def build_times(refs: Sequence[str], repeats: int = 5) -> dict[str, dict[str, float]]:
    """Spec -> module in a warm process, median ms per spec: resolving the spec (read and validated
    once, then cached) and building the module with timm's ``create_model``."""
    import timm

    from rspnet_zoo.zoo.catalog import SHIPPED
    from rspnet_zoo.zoo.registry import resolve_genotype

    out = {}
    for ref in refs:
        resolve_genotype(ref)  # warm: the first read parses and validates the file
        resolve, build = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            genotype = resolve_genotype(ref)
            middle = time.perf_counter()
            arch = genotype.name if genotype.name in SHIPPED else "rspnet"
            timm.create_model(arch, genotype=genotype)
            build.append(time.perf_counter() - middle)
            resolve.append(middle - start)
        out[ref] = dict(
            resolve_ms=statistics.median(resolve) * 1000,
            build_ms=statistics.median(build) * 1000,
            total_ms=statistics.median(r + b for r, b in zip(resolve, build)) * 1000,
        )
    return out
