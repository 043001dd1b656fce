"""Evaluating one sampled architecture of the template search, in a worker process or in-process.

A worker loads the search data once (the first ``images`` of the data set's train split at
``image_size``, without augmentation: 90% meta-train, 10% meta-val), loads the stem weights and
precomputes the stem's two pool outputs for meta-train, which every sample's frozen-stem epochs
reuse. A sample is decoded, its stem loaded, trained ``frozen_epochs`` on the precomputed outputs and
``end_to_end_epochs`` end to end (Adam), and validated after each phase; its reward is the geometric
mean of mIoU, mean accuracy and frequency-weighted IoU on meta-val after the last phase. With a latency
target the reward is multiplied by ``(latency / target) ** -0.07`` when the latency is above the target
(MnasNet's hard-constraint form). The latency is measured, not looked up: the decoded network's median
forward time on this worker's device, batch 1, ``image_size`` square, by torch.utils.benchmark.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rspnet_zoo.data import IGNORE_INDEX, build_dataset
from rspnet_zoo.errors import ZooError
from rspnet_zoo.interop.importers.nas_segm import ENCODER, POOL
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.training.metrics import SegmentationMetrics
from rspnet_zoo.zoo.stats import count_flops, count_parameters
from rspnet_zoo.zoo.weights import check_tensors, read_weights, torch_load
from searchers.template.budgets import TemplateBudget
from searchers.template.space import Actions, TemplateSpace

STEM_NODES = len(ENCODER)
STEM_PREFIXES = tuple(f"nodes.{i}." for i in range(STEM_NODES))
# states index 0 is the input image, node i writes state i + 1
POOL_STATES = tuple(1 + [node[0] for node in ENCODER].index(p) for p in POOL)
LATENCY_EXPONENT = -0.07


@dataclass(frozen=True)
class EvalContext:
    """What a worker needs, picklable: the budget, the data, the stem weights' file, the seed."""

    budget: TemplateBudget
    dataset: str
    data_root: Path | None
    stem_file: Path
    seed: int
    latency_target_ms: float | None = None
    threads: int = 1


def geometric_reward(metrics: dict) -> float:
    """The paper's reward: the geometric mean of mIoU, mean accuracy and frequency-weighted IoU."""
    return math.prod(max(0.0, metrics[k]) for k in ("miou", "mean_acc", "fw_iou")) ** (1 / 3)


def latency_factor(latency_ms: float, target_ms: float) -> float:
    return 1.0 if latency_ms <= target_ms else (latency_ms / target_ms) ** LATENCY_EXPONENT


def dataset_classes(dataset: str, root: Path | None) -> tuple[int, list[str]]:
    data = build_dataset(dataset, "train", root=root, **({"length": 1} if dataset == "synthetic" else {}))
    return data.num_classes, list(getattr(data, "class_names", None) or [])


class SearchData:
    """The meta-train / meta-val tensors of one search."""

    def __init__(self, budget: TemplateBudget, dataset: str, data_root: Path | None, seed: int):
        size = (budget.image_size, budget.image_size)
        if dataset == "synthetic":  # generated at the search size
            data = build_dataset(dataset, "train", size=size, length=budget.images, seed=seed)
        else:  # one random-scale crop per image, drawn once (seeded), so the stem outputs can be precomputed
            torch.manual_seed(seed)
            data = build_dataset(dataset, "train", root=data_root, crop=size, train=True)
        count = min(budget.images, len(data))
        val = max(1, count // 10)
        if count - val < budget.batch_size:
            raise ZooError(f"{count} training images leave {count - val} for meta-train, fewer than one batch")
        images, masks = zip(*(data[i] for i in range(count)))
        x, y = torch.stack(images), torch.stack(masks)
        self.train = (x[: count - val], y[: count - val])
        self.val = (x[count - val :], y[count - val :])
        self.num_classes = data.num_classes
        self.class_names = list(getattr(data, "class_names", None) or [])


def stem_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(STEM_PREFIXES)}


def load_stem_weights(file: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The stem keys (``nodes.0.`` .. ``nodes.6.``, as a built nas-segm model names them) of a safetensors
    file; other keys are ignored, so a zoo-built nas_segm_arch0/1 ``model.safetensors`` serves."""
    if not file.is_file():
        raise ZooError(f"{file}: no such stem weights file")
    weights, _ = read_weights(file)
    for key, value in expected.items():
        if key not in weights:
            raise ZooError(f"{file}: has no stem weight '{key}' (MobileNet-v2 blocks as nodes.0-{STEM_NODES - 1})")
        if weights[key].shape != value.shape:
            raise ZooError(f"{file}: stem weight '{key}' has shape {list(weights[key].shape)}, not {list(value.shape)}")
        if weights[key].is_floating_point() != value.is_floating_point():
            raise ZooError(f"{file}: stem weight '{key}' is {weights[key].dtype}, not {value.dtype} (it is not cast)")
    return {k: weights[k].to(value.dtype) for k, value in expected.items()}


def sample_model(budget: TemplateBudget, data: SearchData, actions: Actions) -> GenotypeNet:
    spec = TemplateSpace.of(budget).decode(
        actions,
        agg_size=budget.head_channels,
        num_classes=data.num_classes,
        name="sample",
        input_size=(3, budget.image_size, budget.image_size),
        class_names=data.class_names,
    )
    return GenotypeNet(spec)


def probe_actions(budget: TemplateBudget) -> Actions:
    """The fixed decoder under which the substitute stem is trained and the pool is precomputed: every
    action 0 but block 0's second location, which reads l2, so that the whole stem is used."""
    space = TemplateSpace.of(budget)
    names = [name for name, _ in space.positions()]
    return space.check(tuple(int(name == "b0.loc_2") for name in names))


def stand_in_actions(budget: TemplateBudget) -> Actions:
    """A mid-priced sample for the estimate: the probe decoder with every block repeating its template the
    middle number of times."""
    space = TemplateSpace.of(budget)
    middle = (budget.max_repeats - 1) // 2
    return space.check(
        tuple(middle if name.endswith(".k") else a for (name, _), a in zip(space.positions(), probe_actions(budget)))
    )


@dataclass(frozen=True)
class SampleEstimate:
    """Seconds of the steps a search is made of, timed on the stand-in sample (``REPEATS`` of each after one
    to warm up): a step on the precomputed stem outputs, an end-to-end step (also what a step of the
    substitute stem's training costs) and a validation pass."""

    frozen_step_s: float
    end_to_end_step_s: float
    validate_s: float
    steps_per_epoch: int

    def sample_s(self, b: TemplateBudget) -> float:
        epochs = b.frozen_epochs * self.frozen_step_s + b.end_to_end_epochs * self.end_to_end_step_s
        return epochs * self.steps_per_epoch + (bool(b.frozen_epochs) + bool(b.end_to_end_epochs)) * self.validate_s

    def stem_s(self, b: TemplateBudget) -> float:
        return b.stem_steps * self.end_to_end_step_s


REPEATS = 2


def _timed(step) -> float:
    step()  # warm-up, not counted
    started = time.perf_counter()
    for _ in range(REPEATS):
        step()
    return (time.perf_counter() - started) / REPEATS


def time_sample(budget: TemplateBudget, data: SearchData) -> SampleEstimate:
    """The estimate's timed steps, in a fork of torch's RNG (the search is the same with or without it)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = sample_model(budget, data, stand_in_actions(budget))
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr)
        x, y = (t[: budget.batch_size] for t in data.train)
        with torch.no_grad():
            states = model.run_nodes(x, STEM_NODES)
        pool = [states[s] for s in POOL_STATES]
        size = list(x.shape[-2:])

        def step(logits: Callable[[], torch.Tensor]) -> None:
            loss = _loss(logits(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        frozen = _timed(lambda: step(lambda: _from_stem(model, pool, size)))
        end_to_end = _timed(lambda: step(lambda: model(x)))
        validate = _timed(lambda: _validate(model, data, budget.batch_size, torch.device("cpu")))
    return SampleEstimate(frozen, end_to_end, validate, math.ceil(len(data.train[0]) / budget.batch_size))


def stem_nodes(model: GenotypeNet) -> int:
    """The encoder stages a sample keeps (a prefix of the stem: the 1/8 stage goes when nothing reads l2)."""
    return sum(node.layer is not None for node in model.genotype.network.nodes)


def make_stem(budget: TemplateBudget, data: SearchData, seed: int, weights: Path | None) -> dict[str, torch.Tensor]:
    """The stem every sample starts from: ``weights`` (pretrained MobileNet-v2 blocks) if given, else the
    substitute: a randomly initialised stem trained ``stem_steps`` Adam steps (lr, batch of the budget)
    on meta-train under the probe decoder, whose own weights are then dropped."""
    torch.manual_seed(seed)
    probe = sample_model(budget, data, probe_actions(budget))
    if weights is not None:
        return load_stem_weights(weights, stem_state(probe))
    optimizer = torch.optim.Adam(probe.parameters(), lr=budget.lr)
    x, y = data.train
    order = torch.Generator().manual_seed(seed)
    probe.train()
    for _ in range(budget.stem_steps):
        idx = torch.randint(len(x), (budget.batch_size,), generator=order)
        loss = _loss(probe(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return stem_state(probe)


def _loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX)


def _from_stem(model: GenotypeNet, pool: list[torch.Tensor], size: list[int]) -> torch.Tensor:
    """Logits from precomputed stem outputs: the states the decoder never reads stay empty."""
    kept = stem_nodes(model)
    states: list = [None] * (kept + 1)
    for state, x in zip(POOL_STATES, pool):
        if state <= kept:
            states[state] = x
    for node in model.nodes[kept:]:
        states.append(node(states, size))
    return model.forward_head(model.decoder(states))


class Evaluator:
    """One worker's data, precomputed stem outputs and device; ``__call__`` evaluates an action string."""

    def __init__(self, context: EvalContext, device: torch.device):
        self.context = context
        self.budget = context.budget
        self.device = device
        self.data = SearchData(context.budget, context.dataset, context.data_root, context.seed)
        self.stem = check_tensors(torch_load(context.stem_file), str(context.stem_file))
        probe = self.build(probe_actions(self.budget))
        outputs: list[list[torch.Tensor]] = [[] for _ in POOL_STATES]
        with torch.no_grad():
            for x in self.data.train[0].split(self.budget.batch_size):
                states = probe.run_nodes(x.to(device), STEM_NODES)
                for out, state in zip(outputs, POOL_STATES):
                    out.append(states[state])
        self.pool = [torch.cat(out) for out in outputs]

    def build(self, actions: Actions) -> GenotypeNet:
        model = sample_model(self.budget, self.data, actions)
        prefixes = STEM_PREFIXES[: stem_nodes(model)]
        model.load_state_dict({k: v for k, v in self.stem.items() if k.startswith(prefixes)}, strict=False)
        return model.to(self.device).eval()

    def __call__(self, actions: Actions) -> dict:
        started = time.perf_counter()
        b = self.budget
        torch.manual_seed(zlib.crc32(repr((self.context.seed, actions)).encode()))
        model = self.build(actions)
        kept = stem_nodes(model)
        stem = model.nodes[:kept]
        decoder = [p for n, p in model.named_parameters() if not n.startswith(STEM_PREFIXES[:kept])]
        x, y = (t.to(self.device) for t in self.data.train)
        size = list(x.shape[-2:])
        optimizer = torch.optim.Adam(decoder, lr=b.lr)
        phases = []
        for _ in range(b.frozen_epochs):
            model.train()
            stem.eval()
            for idx in torch.randperm(len(x)).split(b.batch_size):
                loss = _loss(_from_stem(model, [p[idx] for p in self.pool], size), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        if b.frozen_epochs:
            phases.append(self.validate(model))
        if b.end_to_end_epochs:
            optimizer.add_param_group(dict(params=list(stem.parameters())))
            for _ in range(b.end_to_end_epochs):
                model.train()
                for idx in torch.randperm(len(x)).split(b.batch_size):
                    loss = _loss(model(x[idx]), y[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
            phases.append(self.validate(model))
        metrics = phases[-1]
        result = dict(
            reward=geometric_reward(metrics),
            rewards_per_phase=[round(geometric_reward(m), 6) for m in phases],
            miou=metrics["miou"],
            mean_acc=metrics["mean_acc"],
            fw_iou=metrics["fw_iou"],
            parameters=count_parameters(model),
            flops=count_flops(model.eval(), [3, b.image_size, b.image_size]),
        )
        if self.context.latency_target_ms is not None:
            result["latency_ms"] = self.latency_ms(model)
            result["accuracy_reward"] = result["reward"]
            result["reward"] *= latency_factor(result["latency_ms"], self.context.latency_target_ms)
        result.update(seconds=round(time.perf_counter() - started, 3), worker=os.getpid(), device=str(self.device))
        return result

    def validate(self, model: GenotypeNet) -> dict:
        return _validate(model, self.data, self.budget.batch_size, self.device)

    @torch.no_grad()
    def latency_ms(self, model: GenotypeNet) -> float:
        from rspnet_zoo.perf.timer import benchmark_timer

        x = torch.randn(1, 3, self.budget.image_size, self.budget.image_size, device=self.device)
        timer = benchmark_timer()(
            "model(x)", globals=dict(model=model.eval(), x=x), num_threads=torch.get_num_threads()
        )
        return timer.blocked_autorange(min_run_time=0.2).median * 1e3


@torch.no_grad()
def _validate(model: GenotypeNet, data: SearchData, batch_size: int, device: torch.device) -> dict:
    """Metrics of ``model`` on meta-val; leaves it in eval mode."""
    model.eval()
    metrics = SegmentationMetrics(data.num_classes)
    x, y = data.val
    for idx in torch.arange(len(x)).split(batch_size):
        logits = model(x[idx].to(device))
        metrics.update(F.interpolate(logits, size=y.shape[-2:], mode="bilinear", align_corners=False), y[idx])
    return metrics.compute()


_WORKER: Evaluator | None = None


def init_worker(context: EvalContext, devices) -> None:
    """ProcessPoolExecutor initializer: one Evaluator per worker, on the next free device of ``devices``."""
    global _WORKER
    torch.set_num_threads(context.threads)
    _WORKER = Evaluator(context, torch.device(devices.get()))


def evaluate_in_worker(actions: Actions) -> dict:
    assert _WORKER is not None, "init_worker did not run"
    return _WORKER(actions)
