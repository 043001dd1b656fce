"""train, eval, predict, and ``data sample`` (a scene of the embedded benchmark as a PNG)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rspnet_zoo.cli import options
from rspnet_zoo.cli.options import ImageSize, parse_device
from rspnet_zoo.cli.output import emit, errors, print_table, shown, table, warning_line
from rspnet_zoo.cli.parallel import data_parallel
from rspnet_zoo.errors import ZooError

DEPLOYED_HELP = (
    "A registered name[.tag] (e.g. rspnet_small.synth), a built folder, or an exported FILE.onnx (see --runtime)."
)

data_app = typer.Typer(help="The embedded synthetic benchmark.", no_args_is_help=True)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=errors,
        disable=not enabled,
        transient=False,
    )


class _LazyBars:
    """Bars drawn from their first report on, so an error before any work leaves stderr one line."""

    def __init__(self, enabled: bool):
        self.progress = _progress(enabled)
        self.tasks: dict[str, int] = {}

    def get(self, name: str) -> int:
        if not self.tasks:
            self.progress.start()
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=None, status="")
        return self.tasks[name]

    def __enter__(self) -> _LazyBars:
        return self

    def __exit__(self, *exc) -> None:
        if self.tasks:  # rich's stop() writes a newline even for bars never started
            self.progress.stop()


def _print_metrics(console, metrics: dict, title: str) -> None:
    per_class = table(shown(title))
    per_class.add_column("class")
    per_class.add_column("IoU", justify="right")
    for name, iou in metrics["per_class_iou"].items():
        per_class.add_row(shown(name), "-" if iou is None else f"{iou:.4f}")
    print_table(console, per_class)
    console.print(
        f"mIoU {metrics['miou']:.4f}  mean acc {metrics['mean_acc']:.4f}  "
        f"fwIoU {metrics['fw_iou']:.4f}  pixel acc {metrics['pixel_acc']:.4f}"
    )


@data_parallel
def train(
    model: str = typer.Argument(..., help="A registered name or a spec file."),
    data: str = options.DATA,
    root: Path | None = typer.Option(None, "--root", help="Data set folder (all but synthetic)."),
    epochs: int = options.number(10, "--epochs", kind=options.COUNT, help="Passes over the training split."),
    iterations: int | None = options.number(
        None, "--iterations", kind=options.COUNT, help="Stop after this many steps instead."
    ),
    batch_size: int = options.number(8, "--batch-size", kind=options.BATCH),
    crop: ImageSize | None = typer.Option(
        None,
        "--crop",
        parser=options.parse_size,
        metavar="<HxW>",
        help="Training crop HxW.",
        show_default="128x128 synthetic, 512x512 otherwise",
    ),
    lr: float = options.number(
        0.01, "--lr", kind=options.LEARNING_RATE, help="Initial learning rate of SGD (momentum 0.9, poly decay)."
    ),
    weight_decay: float = options.number(1e-4, "--weight-decay", kind=options.FRACTION),
    seed: int = options.seed("Initialisation, shuffling, augmentation and the synthetic training stream."),
    length: int | None = options.number(
        None, "--length", kind=options.COUNT, help="Synthetic: training images per epoch.", show_default="2000"
    ),
    size: ImageSize | None = options.size(
        None, "Synthetic: scene size HxW the crops are cut from.", show_default="the crop"
    ),
    val_length: int | None = options.number(
        None,
        "--val-length",
        kind=options.COUNT,
        help="Synthetic: validation images.",
        show_default="100, or --length if fewer",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the checkpoint in --out (same settings; more --epochs/--iterations)."
    ),
    force: bool = typer.Option(False, "--force", help="Start over an earlier run in --out, dropping its checkpoint."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Run folder (checkpoint.pt, history.json, curves.png).",
        show_default="runs/<name>.<tag> in $RSPNET_ZOO_HOME",
    ),
    tag: str | None = typer.Option(
        None, "--tag", help="Zoo tag of the trained weights.", show_default="the data set name"
    ),
    device: str | None = options.device(None, show_default="cuda if available"),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="With several GPUs: BatchNorm over the global batch."),
    amp: str | None = options.AMP,
    channels_last: bool = typer.Option(
        False, "--channels-last", help="Train in NHWC memory format (faster convolutions on GPUs and oneDNN)."
    ),
    loss: str = typer.Option("ce", "--loss", help="ce (cross-entropy) or ohem (hard pixels only, as BiSeNet/STDC)."),
    warmup_iters: int = options.number(
        0, "--warmup-iters", kind=options.INDEX, help="Linear learning-rate warmup before poly."
    ),
    workers: int | None = options.WORKERS,
    as_json: bool = options.JSON,
) -> None:
    """Train a spec on a data set; the weights go into the zoo as <name>.<tag>, with metrics in its card."""
    from rspnet_zoo.training.tasks import TrainRequest, run_train

    request = TrainRequest(
        model=model, data=data, root=root, epochs=epochs, iterations=iterations, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, seed=seed, length=length, val_length=val_length, resume=resume, force=force,
        out=out, tag=tag, device=parse_device(device), sync_bn=sync_bn, amp=amp, channels_last=channels_last,
        loss=loss, warmup_iterations=warmup_iters, workers=workers, crop=crop, size=size,
    )  # fmt: skip
    with _LazyBars(not as_json) as bars:
        progress = bars.progress

        def on_step(s: dict) -> None:
            status = f"epoch {s['epoch']}  loss {s['loss']:.4f}  {s['images_per_s']:.1f} img/s"
            progress.update(bars.get(f"train {shown(model)}"), completed=s["step"], total=s["total"], status=status)

        info = run_train(request, on_step, lambda n: progress.advance(bars.get("evaluate val"), n))

    def human(console):
        _print_metrics(console, info["metrics"], f"{info['name']} on {data} val")
        console.print(f"weights -> {shown(info['folder'])}  ({info['parallel']})", soft_wrap=True)
        console.print(
            f"run folder -> {shown(info['run_dir'])} (checkpoint, history.json, curves.png; --resume continues it)",
            soft_wrap=True,
        )
        ref = info["name"] if info["registered"] else f"local-dir:{info['folder']}"
        console.print(f"load them with timm.create_model('{shown(ref)}', pretrained=True)", soft_wrap=True)

    emit(info, human, as_json)


@data_parallel
def evaluate_command(
    model: str = typer.Argument(..., help=DEPLOYED_HELP),
    data: str = options.DATA,
    root: Path | None = typer.Option(None, "--root", help="Data set folder (all but synthetic)."),
    split: str = typer.Option("val", "--split"),
    batch_size: int = options.number(8, "--batch-size", kind=options.BATCH),
    seed: int = options.seed("Synthetic: the stream to draw the split from."),
    length: int | None = options.number(
        None, "--length", kind=options.COUNT, help="Synthetic: images in the split.", show_default="100"
    ),
    size: ImageSize | None = options.size(None, "Synthetic: image size HxW.", show_default="128x128"),
    device: str | None = options.device(None, show_default="cuda if available"),
    optimize: bool = options.OPTIMIZE,
    threads: int | None = options.THREADS,
    amp: str | None = options.AMP,
    workers: int | None = options.WORKERS,
    runtime: str | None = options.FILE_RUNTIME,
    as_json: bool = options.JSON,
) -> None:
    """mIoU, mean accuracy, frequency-weighted IoU and per-class IoU over a whole split."""
    import torch

    from rspnet_zoo.perf.threads import warn_if_starved
    from rspnet_zoo.training.loop import default_device
    from rspnet_zoo.training.tasks import EvalRequest, run_eval

    request = EvalRequest(
        model=model, data=data, root=root, split=split, batch_size=batch_size, seed=seed, length=length,
        size=size, device=parse_device(device), optimize=optimize, amp=amp, workers=workers, runtime=runtime,
    )  # fmt: skip
    if threads is not None:
        torch.set_num_threads(threads)
    on_cpu = (request.device or default_device()).type == "cpu"
    with warn_if_starved(torch.get_num_threads, warning_line, enabled=on_cpu), _LazyBars(not as_json) as bars:
        progress = bars.progress
        metrics = run_eval(
            request,
            on_batch=lambda n: progress.advance(bars.get(f"evaluate {shown(split)}"), n),
            on_start=lambda total: progress.update(bars.get(f"evaluate {shown(split)}"), total=total),
        )

    def human(console):
        _print_metrics(console, metrics, f"{model} on {data} {split} ({metrics['images']} images)")

    emit(metrics, human, as_json)


def predict(
    model: str = typer.Argument(..., help=DEPLOYED_HELP),
    images: list[Path] = typer.Argument(..., help="Image files, at most 4096x2048 pixels each."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Folder for <stem>_mask.png (class ids; .tif above 65,536 classes), <stem>_overlay.png and palette.json.",
    ),
    alpha: float = options.number(0.5, "--alpha", kind=options.FRACTION, help="Opacity of the classes in the overlay."),
    device: str | None = options.device(None, show_default="cpu"),
    optimize: bool = options.OPTIMIZE,
    output_format: str = typer.Option(
        "zoo",
        "--format",
        help="zoo (mask, overlay, palette.json) or cityscapes (<frame>_labelIds.png, as the benchmark server reads).",
    ),
    runtime: str | None = options.FILE_RUNTIME,
    as_json: bool = options.JSON,
) -> None:
    """A class-id mask (palette-indexed PNG) and an overlay with a legend per image, and palette.json."""
    from rspnet_zoo.predict.legend import PALETTE_FILE
    from rspnet_zoo.training.tasks import PredictRequest, run_predict

    request = PredictRequest(
        model, tuple(images), out, alpha=alpha, device=parse_device(device), optimize=optimize, format=output_format,
        runtime=runtime,
    )  # fmt: skip
    results = run_predict(request)

    def human(console):
        if output_format == "cityscapes":
            for r in results:
                console.print(f"{r['image']} -> {r['label_ids']}", soft_wrap=True)
            return
        for r in results:
            found = ", ".join(f"{shown(n)} {c:.1%}" for n, c in r["classes"].items())  # every class, largest first
            console.print(
                f"{shown(r['image'])} -> {shown(r['mask'])}, {shown(r['overlay'])}  ({found})", soft_wrap=True
            )
        colours = shown(out / PALETTE_FILE)
        console.print(f"class colours: {colours}; overlay alpha {alpha}, outlines in the class colours", soft_wrap=True)

    emit(results, human, as_json)


@data_app.command("sample")
def sample(
    out: Path = typer.Argument(..., help="PNG file to write the scene to."),
    size: ImageSize = options.size("256x256", "HxW, at most 4096x2048 pixels (what predict reads)."),
    split: str = typer.Option("val", "--split"),
    index: int = options.number(0, "--index", kind=options.INDEX, help="Which scene of the split."),
    seed: int = options.seed("Which stream of scenes."),
    mask: Path | None = typer.Option(
        None, "--mask", help="Also write the ground truth to this PNG (class ids, in predict's class colours)."
    ),
    as_json: bool = options.JSON,
) -> None:
    """Write one scene of the synthetic benchmark (deterministic by split, index and seed)."""
    options.check_pixels(1, size, options.MAX_IMAGE_PIXELS)
    from rspnet_zoo.data import build_dataset
    from rspnet_zoo.fsutil import writable_output
    from rspnet_zoo.predict.infer import palette, save_png
    from rspnet_zoo.predict.legend import mask_format, save_mask

    writable_output(out)
    if mask is not None:
        writable_output(mask, avoid=[out])
    dataset = build_dataset("synthetic", split, seed=seed, size=size, length=index + 1)
    # Each file is written under the very name given (a mask's format follows the class count).
    named = [(out, ".png")] + ([(mask, mask_format(len(dataset.class_names))[0])] if mask is not None else [])
    for path, suffix in named:
        if path.suffix.lower() != suffix:
            raise ZooError(f"{shown(path)}: this file is written as {suffix}; name a {suffix} file")
    image, labels = dataset.raw(index)
    save_png((image.permute(1, 2, 0).numpy() * 255).round().astype("uint8"), out)
    if mask is not None:
        save_mask(labels.numpy(), palette(dataset.class_names), mask)  # as predict writes its masks
    info = dict(
        image=str(out),
        mask=str(mask) if mask else None,
        split=split,
        index=index,
        seed=seed,
        size=list(image.shape[-2:]),
        classes=sorted({dataset.class_names[i] for i in labels.unique().tolist()}),
    )

    def human(console):
        console.print(
            f"wrote {shown(out)} ({'x'.join(map(str, info['size']))}, {', '.join(info['classes'])})"
            + (f" and its mask {shown(mask)}" if mask else ""),
            soft_wrap=True,
        )

    emit(info, human, as_json)
