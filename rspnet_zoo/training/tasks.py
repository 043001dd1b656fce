"""The library behind the CLI: train, eval, predict and build, each one request object in and a plain
result out, with progress reported through plain callbacks (the CLI draws the bars; nothing here prints).

Model references go through ``zoo.resolve_ref``; random initialisation happens in a fork of torch's
RNG, so a call leaves the caller's random state as it was. The search has its own request and entry
point (``searchers.rspnet.runner``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from rspnet_zoo.data import build_dataset
from rspnet_zoo.data.synthetic import DEFAULT_LENGTH as SYNTHETIC_LENGTH
from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import atomic_write_text, clean_leftovers, locked, writable_output
from rspnet_zoo.names import TAG, check_name
from rspnet_zoo.predict.infer import predict_cityscapes_files, predict_files, prediction_files
from rspnet_zoo.predict.runtime import is_deployed_file, load_runner
from rspnet_zoo.spec.heads import HEADS
from rspnet_zoo.spec.io import spec_sha256
from rspnet_zoo.training import distributed
from rspnet_zoo.training.curves import CURVES_FILE, plot_curves
from rspnet_zoo.training.loop import (
    CHECKPOINT_FILE,
    check_warmup,
    evaluate,
    planned_iterations,
    save_to_zoo,
    train,
    train_command,
)
from rspnet_zoo.training.losses import check_loss
from rspnet_zoo.training.precision import check_amp
from rspnet_zoo.training.runs import check_run
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.folder import build_folder, check_build_target
from rspnet_zoo.zoo.home import zoo_home
from rspnet_zoo.zoo.registry import create_genotype_net, ref_files, resolve_genotype

StepCallback = Callable[[dict], None]  # dict(step, total, epoch, loss, lr, images_per_s)
BatchCallback = Callable[[int], None]  # images done in this batch
TRAIN_LOSS, VAL_MIOU = {"train": "loss"}, {"val": "val_miou"}  # curves.png: legend label -> history key


def _synthetic_options(data: str, length: int | None, size: tuple[int, int] | None) -> dict:
    if data != "synthetic":
        if length is not None or size is not None:
            raise ZooError("--length and --size apply to the synthetic data set only")
        return {}
    return {k: v for k, v in dict(length=length, size=size).items() if v is not None}


def validation_length(r: TrainRequest) -> int | None:
    """Synthetic validation images: ``val_length``, else the split's fixed 100 (what the shipped cards report
    on), or the training images per epoch where a run has fewer, so that a small run validates in
    proportion. None: the data set's whole val split."""
    if r.data != "synthetic":
        if r.val_length is not None:
            raise ZooError("--val-length applies to the synthetic data set only")
        return None
    if r.val_length is not None:
        return r.val_length
    return min(SYNTHETIC_LENGTH["val"], r.length) if r.length is not None else None


@dataclass(frozen=True)
class TrainRequest:
    model: str  # a registered name, a spec file or a built folder
    data: str = "synthetic"
    root: Path | None = None
    epochs: int = 10
    iterations: int | None = None
    batch_size: int = 8
    crop: tuple[int, int] | None = None  # default: 128x128 synthetic, 512x512 otherwise
    lr: float = 0.01
    weight_decay: float = 1e-4
    seed: int = 0
    length: int | None = None  # synthetic: training images per epoch
    size: tuple[int, int] | None = None  # synthetic: scene size the crops are cut from
    val_length: int | None = None  # synthetic: validation images (default: validation_length)
    resume: bool = False
    force: bool = False  # start over an earlier run in the same folder; replace a tag built from another spec
    out: Path | None = None  # run folder; default $RSPNET_ZOO_HOME/runs/<name>.<tag>
    tag: str | None = None  # default: the data set name
    device: torch.device | None = None
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over the global batch
    amp: str | None = None  # bf16 or fp16 mixed precision (rspnet_zoo.training.precision)
    channels_last: bool = False
    loss: str = "ce"  # or ohem (rspnet_zoo.training.losses)
    warmup_iterations: int = 0
    workers: int | None = None  # data-loader processes; default: rspnet_zoo.training.loading.default_workers


# options that change what a run trains, recorded (in its settings and command) when not at their default,
# so that the checkpoints and commands of runs made before they existed stay as they were
TRAINING_OPTIONS = dict(amp=None, channels_last=False, loss="ce", warmup_iters=0)


def train_settings(r: TrainRequest, tag: str, crop: tuple[int, int]) -> dict:
    """The options that decide what a run trains: its checkpoint records them and a resume must match."""
    given = dict(amp=r.amp, channels_last=r.channels_last, loss=r.loss, warmup_iters=r.warmup_iterations)
    return dict(
        data=r.data,
        root=r.root,
        epochs=r.epochs,
        iterations=r.iterations,
        batch_size=r.batch_size,
        crop=crop,
        size=r.size,
        lr=r.lr,
        weight_decay=r.weight_decay,
        seed=r.seed,
        length=r.length,
        val_length=r.val_length,
        tag=tag,
        **{k: v for k, v in given.items() if v != TRAINING_OPTIONS[k]},
    )


def _claim_run(run_dir: Path, checkpoint: Path, r: TrainRequest) -> None:
    """Rank 0, holding the run folder's lock: remove what killed writes left, then resume or start over."""
    clean_leftovers(run_dir)
    check_run(run_dir, [checkpoint] if checkpoint.is_file() else [], r.resume, r.force, "train")


def run_train(r: TrainRequest, on_step: StepCallback | None = None, on_eval_batch: BatchCallback | None = None) -> dict:
    """Train, evaluate on the val split, and save the weights into the zoo as ``<name>.<tag>``.

    One train owns its run folder at a time (a second one of the same folder waits for the lock); the owner
    first removes what killed writes left there, and an earlier run is resumed or, with ``force``, replaced.
    Under torchrun rank 0 alone holds the lock and writes; every rank trains and evaluates its share.
    """
    check_amp(r.amp)  # refused before anything is read or written
    check_loss(r.loss)
    tag = check_name(r.tag or r.data, "--tag", TAG)
    crop = r.crop or ((128, 128) if r.data == "synthetic" else (512, 512))
    g = resolve_genotype(r.model)
    if HEADS[g.head.type].classifies:
        raise ZooError(
            f"'{g.name}' is an image classifier (its {g.head.type} head pools to one label per image); "
            "train fits segmentation networks: give a spec with a dense head"
        )
    check_build_target(zoo_home(), f"{g.name}.{tag}", g, r.force)
    options = _synthetic_options(r.data, r.length, r.size)
    train_set = build_dataset(r.data, "train", root=r.root, crop=crop, train=True, seed=r.seed, **options)
    check_warmup(r.warmup_iterations, planned_iterations(len(train_set), r.batch_size, r.epochs, r.iterations)[1])
    val_length = validation_length(r)
    val_set = build_dataset(r.data, "val", root=r.root, **({} if val_length is None else dict(length=val_length)))
    run_dir = writable_output(r.out or zoo_home() / "runs" / f"{g.name}.{tag}", folder=True)
    writable_output(zoo_home(), folder=True)
    checkpoint = run_dir / CHECKPOINT_FILE
    settings = train_settings(r, tag, crop)
    command = train_command(r.model, **settings)
    stored = dict(settings, spec_sha256=spec_sha256(g))
    del stored["batch_size"]  # per process: train() records the global batch, which a resume must keep
    settings = json.loads(json.dumps(stored, default=str))  # as stored
    validated: dict = {}

    evaluation = dict(amp=r.amp, num_workers=r.workers)

    def validate(model: torch.nn.Module, row: dict) -> None:  # the model after the last epoch is the result
        validated["metrics"] = evaluate(model, val_set, batch_size=r.batch_size, device=r.device, **evaluation)
        row["val_miou"] = validated["metrics"]["miou"]

    with locked(run_dir) if distributed.is_main() else contextlib.nullcontext():
        distributed.on_main(_claim_run, run_dir, checkpoint, r)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(r.seed)
            net = create_genotype_net(g.name, g, num_classes=train_set.num_classes)
        result = train(
            net,
            train_set,
            epochs=r.epochs,
            iterations=r.iterations,
            batch_size=r.batch_size,
            lr=r.lr,
            weight_decay=r.weight_decay,
            seed=r.seed,
            checkpoint=checkpoint,
            resume=r.resume,
            device=r.device,
            on_step=on_step,
            settings=settings,
            command=command,
            on_epoch_end=validate,
            sync_bn=r.sync_bn,
            amp=r.amp,
            channels_last=r.channels_last,
            loss=r.loss,
            warmup_iterations=r.warmup_iterations,
            num_workers=r.workers,
        )
        metrics = validated.get("metrics") or evaluate(
            net, val_set, batch_size=r.batch_size, device=r.device, on_batch=on_eval_batch, **evaluation
        )
        input_size = (net.in_chans, *val_set[0][0].shape[-2:])  # what the card's metrics were measured at
        folder, curves = zoo_home() / f"{g.name}.{tag}", run_dir / CURVES_FILE
        if distributed.is_main():  # the other ranks hold the same weights and metrics; one writes them
            folder = save_to_zoo(
                net,
                g,
                tag,
                train_set.class_names,
                metrics,
                data=r.data,
                commands=result.commands,
                input_size=input_size,
                force=r.force,
            )
            atomic_write_text(
                run_dir / "history.json", json.dumps(dict(history=result.history, metrics=metrics), indent=1) + "\n"
            )
            plot_curves(result.history, curves, f"train {g.name}.{tag}", TRAIN_LOSS, VAL_MIOU)
    return dict(
        name=f"{g.name}.{tag}",
        folder=str(folder),
        run_dir=str(run_dir),
        curves=str(curves),
        checkpoint=str(checkpoint),
        steps=result.steps,
        resumed_from=result.resumed_from,
        history=result.history,
        commands=result.commands,
        command=command,
        registered=g.name in SHIPPED,
        val_images=len(val_set),
        parallel=distributed.describe(r.batch_size),
        metrics={k: v for k, v in metrics.items() if k != "confusion"},
    )


@dataclass(frozen=True)
class EvalRequest:
    model: str  # a registered name[.tag], a built folder or an exported file (FILE.onnx, run in onnxruntime)
    data: str = "synthetic"
    root: Path | None = None
    split: str = "val"
    batch_size: int = 8
    seed: int = 0
    length: int | None = None
    size: tuple[int, int] | None = None
    device: torch.device | None = None
    optimize: bool = False  # rspnet_zoo.nn.fold: same outputs, faster
    amp: str | None = None  # bf16 or fp16 forward passes
    workers: int | None = None  # data-loader processes; default: rspnet_zoo.training.loading.default_workers
    runtime: str | None = None  # what runs an exported file: a key of runtime.FILE_RUNTIMES (default onnxruntime)


def run_eval(r: EvalRequest, on_batch: BatchCallback | None = None, on_start: BatchCallback | None = None) -> dict:
    """Metrics over a whole split; ``on_start(images)`` says how many there are before the first batch."""
    check_amp(r.amp)
    options = _synthetic_options(r.data, r.length, r.size)
    dataset = build_dataset(r.data, r.split, root=r.root, seed=r.seed, **options)
    run = load_runner(r.model, r.device, optimize=r.optimize, runtime=r.runtime)
    if run.num_classes not in (None, dataset.num_classes):
        raise ZooError(
            f"'{r.model}' predicts {run.num_classes} classes, the {r.data} data set has {dataset.num_classes}"
        )
    if len(dataset):
        run.check_input((1, *dataset[0][0].shape))
    if on_start is not None:
        on_start(len(dataset))
    metrics = evaluate(
        run, dataset, batch_size=r.batch_size, device=r.device, on_batch=on_batch, amp=r.amp, num_workers=r.workers
    )
    return dict(model=r.model, data=r.data, split=r.split, **metrics)


@dataclass(frozen=True)
class PredictRequest:
    model: str  # as EvalRequest.model
    images: tuple[Path, ...]
    out: Path
    alpha: float = 0.5
    device: torch.device | None = None
    optimize: bool = False
    format: str = "zoo"  # or cityscapes: <frame>_labelIds.png for the benchmark server and its evaluation
    runtime: str | None = None  # as EvalRequest.runtime


PREDICT_FORMATS = ("zoo", "cityscapes")


def run_predict(r: PredictRequest) -> list[dict]:
    """A colour-coded mask and an overlay PNG per image, in ``r.out``; with ``format='cityscapes'`` the
    Cityscapes label-id PNG instead (``rspnet_zoo.predict.infer.predict_cityscapes_files``)."""
    if r.format not in PREDICT_FORMATS:
        raise ZooError(f"unknown --format '{r.format}' (choose {', '.join(PREDICT_FORMATS)})")
    missing = next((p for p in r.images if not p.is_file()), None)
    if missing is not None:
        raise ZooError(f"{missing}: no such image file")
    read = [Path(r.model)] if is_deployed_file(r.model) else ref_files(r.model)  # "name.int8.onnx" is no tag
    prediction_files(r.images, r.out, inputs=read)
    run = load_runner(r.model, r.device, optimize=r.optimize, runtime=r.runtime)
    if r.format == "cityscapes":
        return predict_cityscapes_files(run, list(r.images), r.out)
    return predict_files(run, list(r.images), r.out, alpha=r.alpha)


@dataclass(frozen=True)
class BuildRequest:
    spec: str  # a spec file or a registered name
    out: Path | None = None  # parent folder; default $RSPNET_ZOO_HOME
    num_classes: int | None = None
    weights: Path | None = None
    seed: int = 0
    force: bool = False  # replace a folder built from another spec


def run_build(r: BuildRequest) -> dict:
    """Compile a spec into ``<out>/<name>/`` (config.json, model.safetensors, README.md)."""
    g = resolve_genotype(r.spec)
    if r.weights is not None and not r.weights.is_file():
        raise ZooError(f"{r.weights}: no such weights file")
    out = writable_output(r.out or zoo_home(), folder=True)
    check_build_target(out, g.name, g, r.force)
    try:
        _, info = build_folder(g, out, num_classes=r.num_classes, weights=r.weights, seed=r.seed, force=r.force)
    except (MemoryError, RuntimeError) as e:
        if not _out_of_memory(e):
            raise
        from rspnet_zoo.zoo.stats import count_parameters, meta_model

        parameters = count_parameters(meta_model(g, r.num_classes))
        raise ZooError(
            f"{r.spec}: out of memory building '{g.name}' ({parameters:,} parameters, "
            f"{parameters * 4 / 2**30:.1f} GiB of float32 weights before activations)"
        ) from None
    return info


def _out_of_memory(e: BaseException) -> bool:
    """An allocation that failed: Python's MemoryError, torch's CUDA OOM, or the CPU allocator's RuntimeError."""
    text = str(e).lower()
    return isinstance(e, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text
