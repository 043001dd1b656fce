"""A latency model of one device: every unit a compiled network calls, timed once; a spec's latency is their sum.

A *unit* is one module call of the compiled network (``rspnet_zoo.nn.model``): an edge op, a step's aggregation, a
cell's concatenation, an RSP partial wrapper, a path's resampling and projection, the fusion of a slot's
paths, a plain layer, a timm encoder (one run gives all its levels), the decoder and the classifier
tail. ``plan_units`` walks the plan the compiler
builds (``plan.lower``) and names each unit by what it computes (its kind, widths and sizes at batch 1),
so a unit repeated across nodes, specs or search candidates is timed once. Each unit is timed as the
real module of ``rspnet_zoo.nn`` (``model``, ``ops``, ``heads``) it stands for, on inputs of its shapes, with
``torch.utils.benchmark``; what the network's own forward loop adds around them is one more unit per
node (``node``: a node that does nothing but hand its input on, timed inside a two-node network).

A table is measured in one runtime (``RUNTIMES``) and predicts latency in that runtime: ``eager``, the
modules as they are; ``optimized``, each unit rewritten by ``rspnet_zoo.nn.fold`` as it rewrites whole
networks (BNs folded, channels_last); ``onnxruntime``, that optimised unit exported to ONNX and run in
an onnxruntime session (``bench.onnx_session``). The whole networks a table is calibrated and checked
on run in the same runtime (``measure_model``), through the same ``_prepared``.

The table (unit key -> ms) is cached as JSON in ``$RSPNET_ZOO_HOME/latency/`` under the device's
*fingerprint*: CPU model, cores, torch version, device, runtime, threads, input size and allocator
(every unit and network is timed with freed memory kept: ``rspnet_zoo.perf.memory``). A cached table
whose fingerprint differs in anything is stale and measured again; units a prediction needs and the
table lacks are measured then and added, so a spec outside the profiled search space is predicted too.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d
from torch import fx, nn

from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import atomic_write_text, read_capped
from rspnet_zoo.nn.heads import DECODERS, HEADS
from rspnet_zoo.nn.ops import AGGREGATES, make_op
from rspnet_zoo.perf.memory import allocator, keep_freed_memory
from rspnet_zoo.perf.timer import benchmark_timer
from rspnet_zoo.spec.models import Encoder, Genotype, LayerArgs
from rspnet_zoo.spec.plan import (
    CellPlan,
    EncoderPlan,
    FeaturePlan,
    LayerPlan,
    NetworkPlan,
    PathPlan,
    SlotPlan,
    TemplatePlan,
    lower,
)

RUNTIMES = ("eager", "optimized", "onnxruntime")
# 'wall': elapsed time, what a latency target means. 'cpu': the process's CPU time, which other processes
# on a shared machine do not inflate; with one thread it is the wall time of the same machine idle.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
FORMAT = 1
MAX_TABLE_BYTES = 64 * 2**20  # a cached table read back
MIN_RUN_TIME = 0.05  # seconds each unit is timed for, at least
BLOCK_S = 1e-3  # seconds of one timed block
MIN_BLOCKS = 7
LONG_RUN = 10  # times min_run_time after which 2 blocks suffice
PASSES = 3  # sweeps over the units a table measures (``LatencyTable.measure``)
Progress = Callable[[int, int], None]  # (done, total) after each timing


@dataclass(frozen=True)
class Unit:
    """One module call: ``kind`` names its builder in ``UNITS``, ``args`` (JSON values) its shapes."""

    kind: str
    args: tuple

    @property
    def key(self) -> str:
        return self.kind + json.dumps(self.args, separators=(",", ":"))


@dataclass(frozen=True)
class PlacedUnit:
    """A unit where the plan calls it: the node index (-1: the head) and its role there."""

    node: int
    role: str  # encoder | path | fuse | op | aggregate | concat | partial | layer | node | head
    unit: Unit
    source: int = -1  # paths: the state they read


def _hw(size: Sequence[int], reduction: int) -> tuple[int, int]:
    """Spatial size at ``reduction``: what padded stride-2 convs and the path resampling give (ceil)."""
    return (size[0] + reduction - 1) // reduction, (size[1] + reduction - 1) // reduction


# ---- the units' modules: each is the real module, called as ``module(*inputs)``


class _ListCall(nn.Module):
    """A module that takes a list of tensors (aggregations, decoders, partial stages), called with tensors."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.inner(list(xs))


class _SizedCall(nn.Module):
    """A module that also takes the image size (paths, fusions, nodes)."""

    def __init__(self, inner: nn.Module, size: Sequence[int], as_list: bool = False):
        super().__init__()
        self.inner = inner
        self.size = list(size)
        self.as_list = as_list

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.inner(list(xs) if self.as_list else xs[0], self.size)


class _Constant(nn.Module):
    """The inside of a partial stage, already computed: the wrapper alone is timed."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.register_buffer("value", torch.zeros(1, *shape))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.value


class _Tail(nn.Module):
    """What the model does after the decoder: global pool (classifiers), classifier, resize to the input."""

    def __init__(self, classifies: bool, pool: str, features: int, classes: int, kernel: int, upsample: str, size):
        super().__init__()
        self.pool = SelectAdaptivePool2d(pool_type=pool, flatten=True) if classifies else nn.Identity()
        self.classifier = (
            nn.Linear(features, classes) if classifies else nn.Conv2d(features, classes, kernel, padding=kernel // 2)
        )
        self.upsample = upsample
        self.size = list(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.classifier(self.pool(x))
        if self.upsample == "none":
            return y
        return F.interpolate(
            y, size=self.size, mode="bilinear", align_corners=self.upsample == "bilinear_align_corners"
        )


def _x(c: int, hw: Sequence[int]) -> torch.Tensor:
    return torch.randn(1, c, *hw)


def _op(name, in_chs, out_chs, stride, dilation, h, w):
    return make_op(name, in_chs, stride, dilation, out_chs), [_x(in_chs, (h, w))]


def _aggregate(aggregate, shapes, width, target):
    target_hw = shapes[target][1:]
    resize = [list(s[1:]) != list(target_hw) for s in shapes]
    module = AGGREGATES[aggregate]([s[0] for s in shapes], width, resize, target)
    return _ListCall(module), [_x(s[0], s[1:]) for s in shapes]


class _Concat(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


def _concat(shapes):
    return _Concat(), [_x(s[0], s[1:]) for s in shapes]


def _partial(shapes, split, inner_shape, stride):
    from rspnet_zoo.nn.model import PartialStage

    return _ListCall(PartialStage(_Constant(inner_shape), split, stride)), [_x(s[0], s[1:]) for s in shapes]


def _path(resample, stride, via, project, in_chs, out_chs, in_hw, size, target_reduction):
    from rspnet_zoo.nn.model import PathInput

    plan = PathPlan(0, in_chs, resample, stride, None, tuple(via), project)
    return _SizedCall(PathInput(plan, out_chs, target_reduction), size), [_x(in_chs, in_hw)]


def _fuse(n, weighted, c, h, w):
    """A slot's fusion of ``n`` paths already brought to shape: the real ``InputFusion`` on identity paths."""
    from rspnet_zoo.nn.model import InputFusion

    paths = tuple(PathPlan(i, c, "none", 1, 1.0 if weighted else None, project=False) for i in range(n))
    fusion = InputFusion(SlotPlan(paths, "attention" if weighted else "sum"), c, 1)
    return _SizedCall(fusion, (h, w), as_list=True), [_x(c, (h, w)) for _ in range(n)]


def _layer(layer, args, in_chs, out_chs, stride, dilation, h, w):
    from rspnet_zoo.nn.model import LayerNode

    plan = LayerPlan(
        index=0,
        id="unit",
        slots=(SlotPlan((PathPlan(0, in_chs, "none", 1, None),), "sum"),),
        out_channels=out_chs,
        reduction=stride,
        layer=layer,
        args=LayerArgs.model_validate(args),
        stride=stride,
        dilation=dilation,
    )
    return _SizedCall(LayerNode(plan), (h * stride, w * stride), as_list=True), [_x(in_chs, (h, w))]


class _Handover(nn.Module):
    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return xs[0]


def _node(c, h, w):
    """A node that hands its input on: what the network's loop and a node's call add around its units."""
    from rspnet_zoo.nn.model import CellNode, InputFusion

    fusion = InputFusion(SlotPlan((PathPlan(0, c, "none", 1, None, project=False),), "sum"), c, 1)
    return _SizedCall(CellNode([fusion], _Handover()), (h, w), as_list=True), [_x(c, (h, w))]


def _decoder(head, shapes, reductions):
    spec = HEADS[head["type"]].spec.model_validate(head)
    features = [FeaturePlan(i, s[0], r) for i, (s, r) in enumerate(zip(shapes, reductions))]
    return _ListCall(DECODERS[head["type"]](features, spec)), [_x(s[0], s[1:]) for s in shapes]


def _tail(classifies, pool, features, classes, kernel, upsample, h, w, size):
    return _Tail(classifies, pool, features, classes, kernel, upsample, size), [_x(features, (h, w))]


class _Encoded(nn.Module):
    """A timm encoder as the network runs it: padded input, one run, levels cropped (``GenotypeNet.encode``)."""

    def __init__(self, encoder: nn.Module, reductions: Sequence[int]):
        super().__init__()
        self.encoder = encoder
        self.reductions = list(reductions)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        from rspnet_zoo.nn.encoders import crop, pad_to

        size = [x.shape[-2], x.shape[-1]]
        features = self.encoder(pad_to(x, max(self.reductions)))
        return [crop(f, size, r) for f, r in zip(features, self.reductions)]


def _encoder(model, kwargs, levels, in_chans, size):
    """One encoder's run at the image size; ``levels`` are (level, reduction, channels) triples."""
    from rspnet_zoo.nn.encoders import create_encoder

    plans = [EncoderPlan(i, f"l{level}", (), c, r, "unit", level) for i, (level, r, c) in enumerate(levels)]
    module = create_encoder("unit", Encoder(model=model, kwargs=dict(kwargs)), plans, in_chans)
    return _Encoded(module, [r for _, r, _ in sorted(levels)]), [_x(in_chans, size)]


UNITS: dict[str, Callable[..., tuple[nn.Module, list[torch.Tensor]]]] = {
    "op": _op,
    "aggregate": _aggregate,
    "concat": _concat,
    "partial": _partial,
    "path": _path,
    "fuse": _fuse,
    "layer": _layer,
    "encoder": _encoder,
    "node": _node,
    "decoder": _decoder,
    "tail": _tail,
}


# ---- walking the plan


def _cell_units(i: int, layout, concat, dilation: int, size) -> list[PlacedUnit]:
    """Edge ops, step aggregations and the output concatenation of one cell instance."""
    out = []
    for step in layout.steps:
        shapes = []
        for e in step.edges:
            h, w = _hw(size, layout.reductions[e.source])
            out.append(PlacedUnit(i, "op", Unit("op", (e.op, e.in_chs, e.out_chs, e.stride, dilation, h, w))))
            shapes.append((e.out_chs, *_hw(size, e.reduction)))
        if len(shapes) > 1 or step.aggregate != "sum":
            out.append(
                PlacedUnit(i, "aggregate", Unit("aggregate", (step.aggregate, tuple(shapes), step.width, step.target)))
            )
    if len(concat) > 1:
        shapes = tuple((layout.widths[s], *_hw(size, layout.reductions[s])) for s in concat)
        out.append(PlacedUnit(i, "concat", Unit("concat", (shapes,))))
    return out


def _slot_units(i: int, slot: SlotPlan, out_chs: int, target: int, reductions, size) -> list[PlacedUnit]:
    out = []
    for p in slot.paths:
        unit = Unit(
            "path",
            (
                p.resample,
                p.stride,
                tuple(p.via),
                p.project,
                p.channels,
                out_chs,
                _hw(size, reductions[p.state]),
                tuple(size),
                target,
            ),
        )
        out.append(PlacedUnit(i, "path", unit, p.state))
    width = out_chs if any(p.project for p in slot.paths) else slot.paths[0].channels
    if len(slot.paths) > 1 or slot.fuse == "attention":
        unit = Unit("fuse", (len(slot.paths), slot.fuse == "attention", width, *_hw(size, target)))
        out.append(PlacedUnit(i, "fuse", unit))
    return out


def plan_units(plan: NetworkPlan, genotype: Genotype, size: Sequence[int]) -> list[PlacedUnit]:
    """Every unit the compiled network calls for a 1 x C x ``size`` input, in the order it calls them."""
    size = tuple(size)
    reductions = [1] + [min(n.reduction, plan.output_stride) for n in plan.nodes]
    widths = [plan.in_chans] + [n.out_channels for n in plan.nodes]
    out: list[PlacedUnit] = []
    for name, levels in plan.encoder_levels().items():
        encoder = genotype.encoders[name]
        triples = tuple((n.level, n.reduction, n.out_channels) for n in levels)
        unit = Unit("encoder", (encoder.model, tuple(sorted(encoder.kwargs.items())), triples, plan.in_chans, size))
        out.append(PlacedUnit(levels[0].index, "encoder", unit))
    for n in plan.nodes:
        i = n.index
        if isinstance(n, EncoderPlan):  # given by its encoder's run
            continue
        out.append(PlacedUnit(i, "node", Unit("node", (widths[i + 1], *_hw(size, reductions[i + 1])))))
        if isinstance(n, LayerPlan):
            h, w = _hw(size, reductions[n.input.state])
            args = (n.args.model_dump(mode="json"),)
            out.append(
                PlacedUnit(
                    i,
                    "layer",
                    Unit("layer", (n.layer, *args, n.input.channels, n.out_channels, n.stride, n.dilation, h, w)),
                )
            )
            continue
        if isinstance(n, CellPlan):
            for slot in n.slots:
                out += _slot_units(i, slot, n.channels, n.input_reduction, reductions, size)
            out += _cell_units(i, n.layout, n.concat, n.dilation, size)
            inner = (len(n.concat) * n.widths[-1], *_hw(size, reductions[i + 1]))
            in_hw = _hw(size, n.input_reduction)
            for k in range(len(n.widths) - 1, 0, -1):
                shapes = tuple((n.widths[k - 1], *in_hw) for _ in n.slots)
                out.append(PlacedUnit(i, "partial", Unit("partial", (shapes, n.widths[k], inner, n.stride))))
                inner = (inner[0] + n.widths[k - 1] - n.widths[k], *inner[1:])
        elif isinstance(n, TemplatePlan):
            for slot in n.slots:
                out += _slot_units(i, slot, n.out_channels, reductions[slot.paths[0].state], reductions, size)
            out += _cell_units(i, n.layout, n.concat, 1, size)
    head = genotype.head
    definition = HEADS[head.type]
    shapes = tuple((f.channels, *_hw(size, f.reduction)) for f in plan.head_inputs)
    decoder = Unit("decoder", (head.model_dump(mode="json"), shapes, tuple(f.reduction for f in plan.head_inputs)))
    out.append(PlacedUnit(-1, "head", decoder))
    features = _decoder_features(plan, genotype)
    if definition.classifies:
        hw, upsample, kernel, pool = shapes[0][1:], "none", 1, head.pool
    else:
        hw = _hw(size, min(f.reduction for f in plan.head_inputs))
        upsample, kernel, pool = head.upsample, head.classifier_kernel, ""
    classes = genotype.defaults.num_classes
    tail = Unit("tail", (definition.classifies, pool, features, classes, kernel, upsample, *hw, size))
    out.append(PlacedUnit(-1, "head", tail))
    return out


def _decoder_features(plan: NetworkPlan, genotype: Genotype) -> int:
    """The decoder's output width, as its module says (built at the plan's widths, no input needed)."""
    head = genotype.head
    return DECODERS[head.type](plan.head_inputs, head).num_features


# ---- timing


def time_unit(
    run: Callable[[], Any], threads: int, min_run_time: float, clock: str = "wall", cuda: bool = False
) -> float:
    """Mean milliseconds of one call of ``run`` (a unit or network ready in its runtime: ``_prepared``)
    under inference mode (``torch.utils.benchmark.Timer``, blocks of about a millisecond, at least
    ``MIN_BLOCKS`` of them, but only 2 of calls that take seconds). The mean, not the median: a network
    runs hundreds of units, and the stalls a shared machine puts between them (a descheduled thread, an
    OpenMP barrier waiting for it) add up in its latency; the mean counts them in each unit's share, so
    the sum of the means predicts the network's time under the same load, where medians leave them out.
    ``clock`` 'cpu' times the process's CPU time instead (``CLOCKS``); ``cuda`` times the kernels to
    their end. Freed memory is kept (``rspnet_zoo.perf.memory``): a unit pays no page faults its network
    would not pay, whatever the process allocated before."""
    keep_freed_memory()
    with torch.inference_mode():
        run()
        clock_fn = CLOCKS[clock]
        if cuda:  # the kernels are asynchronous: time them to their end

            def clock_fn() -> float:
                torch.cuda.synchronize()
                return time.perf_counter()

        timer = benchmark_timer()("run()", globals=dict(run=run), num_threads=threads, timer=clock_fn)
        single = timer.timeit(1).mean
        if single < BLOCK_S:
            single = min(single, *(timer.timeit(1).mean for _ in range(2)))
        number = max(1, int(BLOCK_S / max(single, 1e-7)))
        blocks: list[float] = []
        started = time.perf_counter()
        while True:
            blocks.append(timer.timeit(number).mean)
            elapsed = time.perf_counter() - started
            enough = len(blocks) >= MIN_BLOCKS and elapsed >= min_run_time
            long_calls = len(blocks) >= 2 and elapsed >= LONG_RUN * min_run_time  # calls of seconds: 2 suffice
            if enough or long_calls:
                return statistics.fmean(blocks) * 1e3


def _positional(module: nn.Module, inputs: int) -> fx.GraphModule:
    """``module`` traced as a graph of ``inputs`` positional tensors. The unit wrappers take ``*xs``,
    which fx traces as one placeholder it cannot unpack; flat concrete placeholders give it one each."""
    from rspnet_zoo.nn.fold import TimmTracer

    tracer = TimmTracer()
    return fx.GraphModule(module, tracer.trace(module, concrete_args=(fx.PH,) * inputs), type(module).__name__)


def _prepared(module: nn.Module, inputs: list[torch.Tensor], target: Target, image: bool = False) -> Callable[[], Any]:
    """One call of ``module(*inputs)`` as ``target.runtime`` runs it, ready to time: the one place a
    unit or a network is made ready for its runtime.

    ``optimized`` runs ``rspnet_zoo.nn.fold`` on the unit as on a network, and hands it its inputs
    channels_last, as the tensors inside an optimised network are (``image``: the network's own input,
    which arrives as a caller gives it and the graph converts). ``onnxruntime`` exports that optimised
    graph, as ``rspnet-zoo bench --optimize --runtime onnxruntime`` and ``benchmarks/compare.py`` run
    networks there (``bench.onnx_session``, the target's threads)."""
    from rspnet_zoo.nn.fold import optimize
    from rspnet_zoo.perf.bench import onnx_session

    device = torch.device(target.device)
    module = module.eval().to(device)
    inputs = [x.to(device) for x in inputs]
    if target.runtime == "eager":
        return functools.partial(module, *inputs)
    net = optimize(_positional(module, len(inputs)))
    if target.runtime == "optimized":
        if not image:
            inputs = [x.contiguous(memory_format=torch.channels_last) for x in inputs]
        return functools.partial(net, *inputs)
    named = {f"input_{i}": x for i, x in enumerate(inputs)}
    session = onnx_session(net, named, target.threads, device)
    feeds = {i.name: named[i.name].cpu().numpy() for i in session.get_inputs()}  # an unread input is dropped
    return functools.partial(session.run, None, feeds)


@dataclass(frozen=True)
class Target:
    """What a table is measured for."""

    device: str = "cpu"
    runtime: str = "eager"
    threads: int = 2
    size: tuple[int, int] = (512, 1024)
    clock: str = "wall"

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes a unit's latency; any difference makes a cached table stale."""
        return dict(
            cpu=cpu_model(),
            cores=os.cpu_count(),
            torch=torch.__version__,
            device=self.device if self.device == "cpu" else torch.cuda.get_device_name(),
            runtime=self.runtime,
            threads=self.threads,
            size=list(self.size),
            clock=self.clock,
            allocator=allocator(),
        )

    @property
    def file_name(self) -> str:
        return f"{self.device}-{self.runtime}-t{self.threads}-{self.size[0]}x{self.size[1]}-{self.clock}.json"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tables_dir() -> Path:
    from rspnet_zoo.zoo.home import zoo_home

    return zoo_home() / "latency"


@dataclass
class LatencyTable:
    """Unit key -> mean ms on ``target``; ``measure`` adds the units it lacks (and ``save`` keeps them)."""

    target: Target
    entries: dict[str, float]
    provenance: dict[str, Any]
    min_run_time: float = MIN_RUN_TIME
    passes: int = PASSES
    path: Path | None = None
    overhead_ms: float | None = None  # what a unit costs more inside a network than alone (``calibrate``)

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.target.fingerprint()

    @property
    def fingerprint_id(self) -> str:
        """A short, stable digest of the fingerprint, for provenance."""
        import hashlib

        return hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()[:16]

    def missing(self, units: Iterable[Unit]) -> list[Unit]:
        """The units of ``units`` the table lacks, each once."""
        return list({u.key: u for u in units if u.key not in self.entries}.values())

    def measure(self, units: Iterable[Unit], on_timed: Progress | None = None) -> int:
        """Time every unit of ``units`` the table lacks; returns how many were timed. ``on_timed(done, total)``
        after each timing (``passes`` per unit).

        Each unit is timed once in each of ``passes`` sweeps over them all and keeps the median. A shared
        machine's slow spells last seconds, and units timed one after the other inside one all read slow
        together, so a spec whose units were timed in a row is predicted far above its measured latency.
        Sweeps apart rarely share a spell, so the median drops it."""
        missing = self.missing(units)
        t = self.target
        times: dict[str, list[float]] = {u.key: [] for u in missing}
        for sweep in range(self.passes):
            for i, unit in enumerate(missing):
                torch.manual_seed(0)
                run = _prepared(*UNITS[unit.kind](*unit.args), t)
                times[unit.key].append(time_unit(run, t.threads, self.min_run_time, t.clock, cuda=t.device == "cuda"))
                if on_timed is not None:
                    on_timed(sweep * len(missing) + i + 1, self.passes * len(missing))
        for key, ms in times.items():
            self.entries[key] = round(statistics.median(ms), 6)
        return len(missing)

    def ms(self, units: Iterable[Unit]) -> float:
        """Their summed latency as timed alone (no overhead); units the table lacks are measured first."""
        units = list(units)
        if self.measure(units) and self.path is not None:
            self.save()
        return sum(self.entries[u.key] for u in units)

    def unit_ms(self, unit: Unit) -> float:
        """One measured unit's latency inside a network: as timed alone plus the per-unit overhead."""
        return self.entries[unit.key] + (self.overhead_ms or 0.0)

    def predict(self, genotype: Genotype) -> float:
        """Predicted ms of ``genotype`` at the table's size: the sum over the units of its plan, each with
        the table's per-unit overhead."""
        units = [p.unit for p in plan_units(lower(genotype), genotype, self.target.size)]
        return self.ms(units) + len(units) * (self.overhead_ms or 0.0)

    def calibrate(self, genotypes: Sequence[Genotype], rounds: int = 3, on_timed: Progress | None = None) -> float:
        """Set the per-unit overhead: the mean over ``genotypes`` (whole networks) of (measured - summed) / units,
        each network measured in ``rounds`` interleaved rounds (the median: a shared machine's whole-network
        times moved by a quarter between two profiles minutes apart).

        A unit timed alone runs warm: its weights stay in the caches between calls and the network's
        loop is not around it. In a network each unit fetches its weights again and is called from a
        colder loop: a cost per call that hardly depends on what the unit computes. So the overhead is
        added per unit, not as a factor on the sum: a factor fitted on the light-weight space's networks
        overshoots networks of other shapes (Auto-DeepLab), where the same networks' per-unit overhead
        predicts them (docs/benchmarks.md has the comparison). It is measured on the
        search space's own networks and recorded with the table; the specs a prediction is checked on are
        never among them. ``on_timed(done, total)`` after each network's measurement."""
        from rspnet_zoo.nn.model import GenotypeNet

        models = [GenotypeNet(g, pretrained_encoders=False) for g in genotypes]
        units = [[p.unit for p in plan_units(lower(g), g, self.target.size)] for g in genotypes]
        summed = [self.ms(u) for u in units]
        times: list[list[float]] = []
        for _ in range(rounds):
            times.append([])
            for m in models:
                times[-1].append(measure_model(m, self.target))
                if on_timed is not None:
                    on_timed(sum(map(len, times)), rounds * len(models))
        per_unit = [(statistics.median(t[i] for t in times) - summed[i]) / len(units[i]) for i in range(len(genotypes))]
        self.overhead_ms = round(sum(per_unit) / len(per_unit), 6)
        self.provenance["calibrated_on"] = [g.name for g in genotypes]
        self.provenance["overhead_ms_per_network"] = [round(o, 6) for o in per_unit]
        return self.overhead_ms

    def save(self) -> Path:
        path = self.path or tables_dir() / self.target.file_name
        doc = dict(
            format=FORMAT,
            fingerprint=self.fingerprint,
            provenance=self.provenance,
            overhead_ms=self.overhead_ms,
            units=len(self.entries),
            entries=dict(sorted(self.entries.items())),
        )
        atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
        self.path = path
        return path


def load_table(target: Target, path: Path | None = None) -> LatencyTable | None:
    """The cached table for ``target``, or None when there is none or its fingerprint is stale."""
    path = path or tables_dir() / target.file_name
    if not path.is_file():
        return None
    try:
        doc = json.loads(read_capped(path, MAX_TABLE_BYTES))
    except (OSError, ValueError, RecursionError) as e:
        raise ZooError(f"{path}: not a latency table ({e})") from None
    if doc.get("format") != FORMAT or doc.get("fingerprint") != target.fingerprint():
        return None
    return LatencyTable(
        target, dict(doc["entries"]), dict(doc["provenance"]), path=path, overhead_ms=doc.get("overhead_ms")
    )


def check_target(target: Target) -> None:
    if target.runtime not in RUNTIMES:
        raise ZooError(f"unknown runtime '{target.runtime}' for the latency model (one of {', '.join(RUNTIMES)})")
    if target.runtime == "onnxruntime":
        from rspnet_zoo.interop.export import require

        require("onnxruntime")
    if target.clock not in CLOCKS:
        raise ZooError(f"unknown clock '{target.clock}' (one of {', '.join(CLOCKS)})")
    if target.device not in ("cpu", "cuda"):
        raise ZooError(f"unknown device '{target.device}' (cpu or cuda)")
    if target.device == "cuda" and not torch.cuda.is_available():
        raise ZooError("--device cuda: no CUDA device is available here")


def open_table(target: Target, command: str = "", path: Path | None = None) -> LatencyTable:
    """The cached table for ``target`` if its fingerprint matches, else a new, empty one (to be measured)."""
    check_target(target)
    table = load_table(target, path)
    if table is not None:
        return table
    provenance = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=command or None,
        torch=torch.__version__,
        min_run_time_s=MIN_RUN_TIME,
        passes=PASSES,
        load_average=list(os.getloadavg()),
    )
    return LatencyTable(target, {}, provenance, path=path)


@dataclass
class Profile:
    """What profiling a set of networks on a target involves, known before it runs: the table (cached or
    new), the units it lacks, whether it still needs its per-unit overhead (``calibrate``)."""

    table: LatencyTable
    units: list[Unit]  # every unit of the networks
    missing: list[Unit]
    calibrate_on: Sequence[Genotype]

    @property
    def cached(self) -> bool:
        """Nothing to measure: the cached table covers the networks and is calibrated."""
        return not self.missing and not self.calibrate_on

    def run(self, on_progress: Callable[[str, int, int], None] | None = None) -> tuple[LatencyTable, int]:
        """Measure and calibrate what is missing and save the table; returns it and how many units were
        timed. ``on_progress(phase, done, total)``: phase 'units' then 'calibration'."""
        table = self.table

        def report(phase: str) -> Progress | None:
            return None if on_progress is None else functools.partial(on_progress, phase)

        timed = table.measure(self.missing, report("units"))
        if self.calibrate_on:
            table.calibrate(self.calibrate_on, on_timed=report("calibration"))
        if timed or self.calibrate_on or table.path is None or not table.path.is_file():
            table.save()
        return table, timed


def plan_profile(
    target: Target,
    genotypes: Iterable[Genotype],
    command: str = "",
    path: Path | None = None,
    calibrate_on: Sequence[Genotype] = (),
) -> Profile:
    """What ``profile`` will do: the table for ``target`` (cached if its fingerprint matches) and the units
    of ``genotypes`` it lacks; calibration on ``calibrate_on`` when the table has no per-unit overhead yet."""
    table = open_table(target, command, path)
    units = [p.unit for g in genotypes for p in plan_units(lower(g), g, target.size)]
    calibrate = tuple(calibrate_on) if table.overhead_ms is None else ()
    return Profile(table, units, table.missing(units), calibrate)


def profile(
    target: Target,
    genotypes: Iterable[Genotype],
    command: str = "",
    path: Path | None = None,
    calibrate_on: Sequence[Genotype] = (),
) -> tuple[LatencyTable, int]:
    """The table for ``target`` covering every unit of ``genotypes`` (a search space's networks), measured
    where the cache lacks them or is stale, and calibrated on the networks ``calibrate_on`` when it has
    no per-unit overhead yet; returns it and how many units were timed now."""
    return plan_profile(target, genotypes, command, path, calibrate_on).run()


def measure_model(model: nn.Module, target: Target, min_run_time: float = 0.5) -> float:
    """Measured latency (ms, the mean of ``time_unit``) of ``model`` on a 1 x 3 x size input in the
    target's runtime, timed as units are."""
    torch.manual_seed(0)
    x = torch.randn(1, getattr(model, "in_chans", 3), *target.size)
    run = _prepared(model, [x], target, image=True)
    return time_unit(run, target.threads, min_run_time, target.clock, cuda=target.device == "cuda")
