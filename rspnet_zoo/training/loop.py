"""The training loop and the evaluation pass, for any segmentation ``nn.Module``.

The seed papers' recipe: SGD with momentum 0.9 and weight decay, a poly learning-rate schedule
stepped per iteration, cross-entropy that ignores label 255. A checkpoint is written atomically at the
end of every epoch; each epoch reseeds torch from ``(seed, epoch)`` (dropout) inside a fork of its RNG,
the shuffling is a function of ``(seed, epoch)`` and each image's augmentation of ``(seed, epoch, image)``,
so the caller's random state is left as it was and a resumed run continues exactly where the
interrupted one would have gone.

Under torchrun the model is wrapped in DistributedDataParallel and each rank trains on its share of
every global batch (``rspnet_zoo.training.distributed``); ``batch_size`` is per process. Rank 0 writes the
checkpoint, which records the global batch: a resume may use another number of processes as long as
per-process batch times processes stays the same. Evaluation splits the images among the ranks and sums
their confusion matrices.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset

from rspnet_zoo.errors import WeightsError, ZooError
from rspnet_zoo.fsutil import atomic_path
from rspnet_zoo.predict.runtime import Runner, as_runner, logits_of
from rspnet_zoo.spec.models import Genotype
from rspnet_zoo.textutil import command_line
from rspnet_zoo.training import distributed
from rspnet_zoo.training.loading import loader_settings
from rspnet_zoo.training.losses import build_loss
from rspnet_zoo.training.metrics import SegmentationMetrics
from rspnet_zoo.training.precision import autocast, grad_scaler
from rspnet_zoo.training.runs import check_fields, check_settings
from rspnet_zoo.zoo.card import trained_note
from rspnet_zoo.zoo.folder import FolderWeights, write_folder
from rspnet_zoo.zoo.home import zoo_home
from rspnet_zoo.zoo.timm_registration import refresh_tags
from rspnet_zoo.zoo.weights import check_tensor, check_tensors, fit_problem, torch_load, trained

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainResult:
    model: nn.Module
    # one row per epoch: epoch, step, loss, lr (the epoch's last step trained with it), images_per_s, seconds
    history: list[dict] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # every iteration of this call
    steps: int = 0  # total iterations done, resumed ones included
    resumed_from: int | None = None  # the step the run resumed at
    commands: list[str] = field(default_factory=list)  # the commands that made the run, in order


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def poly_schedule(total_steps: int, power: float = 0.9, warmup_steps: int = 0) -> Callable[[int], float]:
    """The learning-rate factor at a step: poly decay, times a linear ramp from ``1/warmup_steps`` to 1 over
    the first ``warmup_steps`` (the ramp keeps early large gradients of a fresh head from wrecking BatchNorm
    statistics and pretrained weights)."""

    def factor(step: int) -> float:
        poly = max(0.0, 1.0 - step / max(1, total_steps)) ** power
        return poly * min(1.0, (step + 1) / warmup_steps) if warmup_steps else poly

    return factor


def planned_iterations(items: int, batch_size: int, epochs: int, iterations: int | None) -> tuple[int, int]:
    """(steps per epoch, total steps) of a run on ``items`` images over this process group."""
    steps_per_epoch = math.ceil(math.ceil(items / distributed.world_size()) / batch_size)  # DistributedSampler pads
    if steps_per_epoch == 0:
        raise ZooError("the training set is empty")
    return steps_per_epoch, iterations if iterations is not None else epochs * steps_per_epoch


def check_warmup(warmup_iterations: int, total: int) -> None:
    if warmup_iterations >= total:
        raise ZooError(f"--warmup-iters {warmup_iterations} leaves none of the run's {total} iterations to poly decay")


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def load_checkpoint(file: Path) -> dict:
    if not file.is_file():
        raise ZooError(f"{file}: no checkpoint to resume from")
    return torch_load(file)


CHECKPOINT_FIELDS = dict(
    model=dict,
    optimizer=dict,
    scheduler=dict,
    epoch=int,
    step=int,
    history=list[dict],
    settings=dict,
    commands=list[str],
)
RESUMABLE_CHANGES = ("epochs", "iterations")  # a longer run: the card then lists every command that made it


def check_checkpoint(file: Path, state: object, model: nn.Module) -> dict:
    """A loaded checkpoint's structure and tensors, checked before any of it is used: the model's through
    the weights reader's checks (dtype, finite) and against the model, the optimizer's finite (a NaN
    momentum poisons the first step). One line names the first fault."""
    check_fields(file, state, CHECKPOINT_FIELDS, "training")
    check_tensors(state["model"], str(file))
    problem = fit_problem(model.state_dict(), state["model"])
    if problem:
        raise ZooError(f"{file}: does not fit this model: {problem}")
    per_parameter = state["optimizer"].get("state", {})
    if isinstance(per_parameter, dict):
        for index, entries in per_parameter.items():
            for name, value in entries.items() if isinstance(entries, dict) else ():
                if isinstance(value, torch.Tensor):
                    check_tensor(f"optimizer.state.{index}.{name}", value, str(file))
    return state


def train(
    model: nn.Module,
    dataset: Dataset,
    *,
    epochs: int = 1,
    iterations: int | None = None,
    batch_size: int = 8,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    poly_power: float = 0.9,
    seed: int = 0,
    checkpoint: Path | None = None,
    resume: bool = False,
    device: torch.device | None = None,
    num_workers: int | None = 0,
    on_step: Callable[[dict], None] | None = None,
    settings: dict | None = None,
    command: str | None = None,
    on_epoch_end: Callable[[nn.Module, dict], None] | None = None,
    sync_bn: bool = False,
    amp: str | None = None,
    channels_last: bool = False,
    loss: str = "ce",
    warmup_iterations: int = 0,
) -> TrainResult:
    """Train ``model`` in place on ``dataset`` for ``iterations`` steps, or ``epochs`` passes if not given.

    ``checkpoint`` is written after every epoch (model, optimizer, schedule, step, history, the global
    batch, the run's ``settings`` and the ``command`` lines that made it); with ``resume`` the run starts
    from it, when it was made with the same ``settings`` but for RESUMABLE_CHANGES and is not longer than
    asked. ``on_step`` gets ``dict(step, total, epoch, loss, lr, images_per_s)`` after each iteration (the
    CLI's progress bar; ``lr`` is the one the step trained with). ``on_epoch_end(model, row)`` runs after
    each epoch on every rank, before the checkpoint, and may add to the epoch's history row (``run_train``
    adds the validation mIoU); training resumes in train mode after it. ``sync_bn``: under torchrun on
    GPUs, BatchNorm statistics over the global batch (torch's SyncBatchNorm).

    ``amp`` (bf16, fp16): mixed precision (``rspnet_zoo.training.precision``); ``channels_last``: the model
    and its inputs in NHWC memory format while training (faster convolutions on tensor cores and oneDNN),
    back to the usual format after; ``loss``: ``ce`` or ``ohem`` (``rspnet_zoo.training.losses``);
    ``warmup_iterations``: a linear learning-rate ramp before the poly decay. ``num_workers``: data-loader
    processes (None: the default of ``rspnet_zoo.training.loading``, which also decides pinned memory,
    persistent workers and prefetching from the device).
    """
    device = distributed.device(device) or default_device()
    world = distributed.world_size()
    steps_per_epoch, total = planned_iterations(len(dataset), batch_size, epochs, iterations)
    num_epochs = math.ceil(total / steps_per_epoch)
    check_warmup(warmup_iterations, total)
    criterion = build_loss(loss)
    scaler = grad_scaler(amp, device)
    memory_format = torch.channels_last if channels_last else torch.preserve_format

    model.to(device, memory_format=memory_format).train()
    forward = _data_parallel(model, device, sync_bn)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_schedule(total, poly_power, warmup_iterations))
    settings = dict(settings or {}, global_batch=batch_size * world)  # a resume may change the process count
    result = TrainResult(model)
    start_epoch = 0
    if resume:
        if checkpoint is None:
            raise ZooError("resuming needs a checkpoint file")
        state = check_checkpoint(checkpoint, distributed.on_main(load_checkpoint, checkpoint), model)
        check_settings(checkpoint, state["settings"], settings, RESUMABLE_CHANGES)
        if total < state["step"]:
            raise ZooError(f"{checkpoint}: the run already did {state['step']} steps; resuming cannot shorten it")
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if "scaler" in state:
                scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise ZooError(f"{checkpoint}: does not fit this model and optimizer ({str(e).splitlines()[0]})") from None
        start_epoch, result.steps, result.history = state["epoch"], state["step"], list(state["history"])
        result.resumed_from = result.steps
        result.commands = list(state["commands"])
    if command is not None and command not in result.commands[-1:]:
        result.commands.append(command)

    loading = loader_settings(device, num_workers)
    shards = distributed.ShardedEpochs(dataset, batch_size, seed=_epoch_seed(seed, 0), drop_last=False, loading=loading)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the caller's RNG stays
        for epoch in range(start_epoch, num_epochs):
            torch.manual_seed(_epoch_seed(seed, epoch))
            epoch_loss, epoch_images, started = 0.0, 0, time.perf_counter()
            tick = started
            lr_used = scheduler.get_last_lr()[0]
            for images, masks in shards.epoch(epoch):
                if result.steps >= total:
                    break
                images = images.to(device, memory_format=memory_format, non_blocking=loading.non_blocking)
                masks = masks.to(device, non_blocking=loading.non_blocking)
                with autocast(amp, device):
                    logits = logits_of(forward(images))
                    if logits.shape[-2:] != masks.shape[-2:]:
                        logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
                    loss_value = criterion(logits.float(), masks)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss_value).backward()
                lr_used = scheduler.get_last_lr()[0]  # what this step trains with; the schedule then moves on
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                result.steps += 1
                value = distributed.mean(float(loss_value.detach()))
                if not math.isfinite(value):
                    raise ZooError(f"step {result.steps}: the training loss is {value}; {DIVERGED}")
                result.losses.append(value)
                epoch_loss += value * images.shape[0] * world
                epoch_images += images.shape[0] * world
                now = time.perf_counter()
                if on_step is not None:  # throughput with the data loading of the step included
                    on_step(
                        dict(
                            step=result.steps,
                            total=total,
                            epoch=epoch + 1,
                            loss=value,
                            lr=lr_used,
                            images_per_s=images.shape[0] * world / (now - tick),
                        )
                    )
                tick = now
            check_finite(model, f"the model after epoch {epoch + 1}")
            seconds = time.perf_counter() - started
            result.history.append(
                dict(
                    epoch=epoch + 1,
                    step=result.steps,
                    loss=epoch_loss / max(1, epoch_images),
                    lr=lr_used,
                    images_per_s=epoch_images / seconds,
                    seconds=seconds,
                )
            )
            if on_epoch_end is not None:
                on_epoch_end(model, result.history[-1])
                model.train()
            if checkpoint is not None and distributed.is_main():
                save_checkpoint(checkpoint, model, optimizer, scheduler, epoch + 1, result, settings, scaler)
    if channels_last:
        model.to(memory_format=torch.contiguous_format)  # the layout every reader of the weights expects
    model.eval()
    return result


DIVERGED = "training diverged and stopped before saving anything from it (a lower --lr, then --force to start over)"


def check_finite(model: nn.Module, where: str) -> None:
    """Weights that went NaN or Inf (a learning rate too high) end the run with one line: they are never saved."""
    try:
        check_tensors(model.state_dict(), where)
    except WeightsError as e:
        raise ZooError(f"{e}; {DIVERGED}") from None


def _data_parallel(model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
    """``model`` wrapped for the process group (itself on one process); its parameters stay the model's."""
    if distributed.world_size() == 1:
        return model
    if sync_bn:
        if device.type != "cuda":
            raise ZooError("--sync-bn needs CUDA devices (torch's SyncBatchNorm runs on GPUs only)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def save_checkpoint(
    file: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    result: TrainResult,
    settings: dict,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    check_tensors(model.state_dict(), f"{file}: refused to write the checkpoint")
    state = dict(
        settings=settings,
        commands=result.commands,
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        epoch=epoch,
        step=result.steps,
        history=result.history,
    )
    if scaler is not None and scaler.is_enabled():  # fp16: the loss scale it has settled on
        state["scaler"] = scaler.state_dict()
    with atomic_path(file) as tmp:
        torch.save(state, tmp)


@torch.no_grad()
def evaluate(
    model: nn.Module | Runner,
    dataset: Dataset,
    *,
    batch_size: int = 8,
    device: torch.device | None = None,
    num_workers: int | None = 0,
    on_batch: Callable[[int], None] | None = None,
    amp: str | None = None,
) -> dict:
    """Metrics of ``model`` over the whole of ``dataset`` (see ``SegmentationMetrics.compute``).

    ``model``: a torch module, run on ``device``, or any runner (``rspnet_zoo.predict.runtime``: an exported
    file in its runtime), which runs where it was made for. Images of different sizes may share a batch:
    each size is run as its own stacked forward pass. ``amp`` (bf16, fp16): a torch model's forward pass in
    mixed precision; ``num_workers``: data-loader processes (None: ``rspnet_zoo.training.loading``'s default).
    A ``Subset`` is scored with the classes of the data set it is cut from.
    """
    device = distributed.device(device) or default_device()
    run = as_runner(model, device)
    whole = dataset.dataset if isinstance(dataset, Subset) else dataset
    metrics = SegmentationMetrics(whole.num_classes, getattr(whole, "class_names", None))
    dataset = distributed.eval_shard(dataset)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        collate_fn=list,
        **loader_settings(device, num_workers).dataloader_options(),
    )
    images_seen = 0
    for batch in loader:
        by_size: dict[tuple[int, int], list] = {}
        for image, mask in batch:
            by_size.setdefault(tuple(image.shape[-2:]), []).append((image, mask))
        for items in by_size.values():
            images = torch.stack([i for i, _ in items])
            masks = torch.stack([m for _, m in items])
            with autocast(amp, device):
                logits = run(images).float()
            if logits.shape[-2:] != masks.shape[-2:]:
                logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
            metrics.update(logits.argmax(1), masks)
        images_seen += len(batch)
        if on_batch is not None:
            on_batch(len(batch))
    out = metrics.compute()
    out["images"] = int(distributed.sum_(torch.tensor(images_seen)))
    return out


def train_command(model: str, **options: Any) -> str:
    """The ``rspnet-zoo train`` line that reruns a training, every option spelled out."""
    return command_line(["rspnet-zoo", "train", model], options)


def save_to_zoo(
    model: nn.Module,
    genotype: Genotype,
    tag: str,
    class_names: Sequence[str],
    metrics: dict,
    *,
    data: str,
    commands: Sequence[str],
    home: Path | None = None,
    input_size: Sequence[int] | None = None,
    force: bool = False,
) -> Path:
    """Write ``<home>/<name>.<tag>/`` (config, safetensors, card with the metrics), where timm finds the tag,
    and register the tag with timm. ``input_size`` (C, H, W): what the metrics were measured at; ``force``:
    replace a tag folder built from another spec (``zoo.folder.check_build_target``)."""
    name = f"{genotype.name}.{tag}"
    weights = FolderWeights(
        model,
        trained(data, metrics),
        note=trained_note(name, data, metrics, commands, input_size),
        class_names=class_names,
        input_size=input_size,
        results=dict(dataset=data, split="val", metrics=metrics),
    )
    folder, _ = write_folder(genotype, home or zoo_home(), weights, name, force=force)
    refresh_tags()
    return folder
