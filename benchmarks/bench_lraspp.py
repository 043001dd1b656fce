"""rspnet_small (and any other zoo networks) against torchvision's LRASPP MobileNetV3-Large on the synthetic benchmark.

Neither model has pretrained weights. Both train with the same schedule (SGD momentum 0.9, poly
learning rate, cross-entropy ignoring 255, the same crops in the same order) and are evaluated on the
same validation split, in one run. Printed: parameters, training throughput at 512x512 crops on this machine's CPU
(images/s and the ratio), and the validation mIoU each model reaches. RSPNet's claim to check: at
least LRASPP's mIoU with at most a third of its parameters. With ``--int8`` each trained model is also
quantized by the same tool with the same calibration (``rspnet_zoo.interop.quantize``: onnxruntime's static
quantization, ``--calibration-images`` synthetic train images, every layer but the stem's first convolution
in int8: no layer kept float for agreement) and its int8 file evaluated on the same split in onnxruntime,
beside the float mIoU. (``benchmarks/bench_int8.py`` does the same for the shipped synth weights and times it.)

    .venv/bin/python benchmarks/bench_lraspp.py                # the full run (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/bench_lraspp.py --models rspnet_small rspnet_c   # both shipped RSPNets
    .venv/bin/python benchmarks/bench_lraspp.py --int8         # also the int8 files' mIoU
    .venv/bin/python benchmarks/bench_lraspp.py --iterations 20 --throughput-steps 2   # a smoke run
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from rspnet_zoo.data import build_dataset
from rspnet_zoo.data.synthetic import SyntheticSegmentation
from rspnet_zoo.interop.quantize import Calibration, quantize_model
from rspnet_zoo.perf.bench import load_model
from rspnet_zoo.predict.runtime import load_runner
from rspnet_zoo.training.loop import evaluate, logits_of, train
from rspnet_zoo.zoo.stats import count_parameters

PEER = "lraspp_mobilenet_v3_large"
INT8_EXPORT_SIZE = (128, 128)  # the synthetic val size; the files take any size


def int8_miou(name: str, net: torch.nn.Module, val_set, calibration_images: int) -> dict:
    """``net`` quantized to an int8 ONNX file (all layers int8 but the stem, whatever the agreement) and that
    file's mIoU on ``val_set`` in onnxruntime; with the check's agreement with the float file."""
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / f"{name}.int8.onnx"
        info = quantize_model(
            net.eval(), file, INT8_EXPORT_SIZE, Calibration(images=calibration_images), dynamic_size=True,
            min_agreement=0.0,
        )  # fmt: skip
        miou = evaluate(load_runner(str(file)), val_set, device=torch.device("cpu"))["miou"]
    return dict(int8_miou=miou, int8_agreement=info["quantization"]["check"]["agreement"])


def models(names: list[str], num_classes: int, seed: int) -> dict[str, torch.nn.Module]:
    """Zoo names or spec files, then LRASPP, each initialised from the same seed."""
    nets = {}
    for name in names:
        torch.manual_seed(seed)
        nets[name] = load_model(name, num_classes).train()
    torch.manual_seed(seed)
    nets[PEER] = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
    return nets


def throughput(model: torch.nn.Module, batch_size: int, crop: int, steps: int) -> float:
    """Training images/s at ``crop`` x ``crop``: forward, cross-entropy, backward, SGD step; one warm-up step."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    data = SyntheticSegmentation("train", size=(crop, crop), length=batch_size)
    images = torch.stack([data.raw(i)[0] for i in range(batch_size)])
    masks = torch.stack([data.raw(i)[1] for i in range(batch_size)])
    timings = []
    for step in range(steps + 1):
        start = time.perf_counter()
        loss = F.cross_entropy(logits_of(model(images)), masks, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step > 0:
            timings.append(time.perf_counter() - start)
    return batch_size / float(np.median(timings))


def generation_ms(size: int, count: int = 50) -> float:
    data = SyntheticSegmentation("train", size=(size, size), length=count)
    start = time.process_time()
    for i in range(count):
        data.raw(i)
    return (time.process_time() - start) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["rspnet_small"], help="zoo names or spec files")
    parser.add_argument("--iterations", type=int, default=500, help="training steps per model")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=96, help="training crop of the accuracy run")
    parser.add_argument("--size", type=int, default=128, help="synthetic scene size the crops come from")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--throughput-crop", type=int, default=512)
    parser.add_argument("--throughput-batch", type=int, default=4)
    parser.add_argument("--throughput-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--int8", action="store_true", help="also quantize each trained model, score its int8 file")
    parser.add_argument("--calibration-images", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train_set = build_dataset(
        "synthetic",
        "train",
        crop=(args.crop, args.crop),
        train=True,
        seed=args.seed,
        size=(args.size, args.size),
        length=args.iterations * args.batch_size,
    )
    val_set = build_dataset("synthetic", "val", seed=args.seed)
    nets = models(args.models, train_set.num_classes, args.seed)
    print(
        f"torch {torch.__version__}, {args.threads} threads; synthetic generation "
        f"{generation_ms(512):.2f} ms per 512x512 scene (CPU time)"
    )

    rows = {}
    for name, net in nets.items():
        rows[name] = dict(
            parameters=count_parameters(net),
            images_per_s=throughput(net, args.throughput_batch, args.throughput_crop, args.throughput_steps),
        )
        print(
            f"{name}: {rows[name]['parameters']:,} parameters, {rows[name]['images_per_s']:.2f} training images/s "
            f"at {args.throughput_crop}x{args.throughput_crop} (batch {args.throughput_batch})",
            flush=True,
        )
    for name, net in models(args.models, train_set.num_classes, args.seed).items():
        start = time.perf_counter()
        train(
            net,
            train_set,
            iterations=args.iterations,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            device=torch.device("cpu"),
        )
        rows[name]["train_s"] = time.perf_counter() - start
        rows[name]["miou"] = evaluate(net, val_set, device=torch.device("cpu"))["miou"]
        print(
            f"{name}: val mIoU {rows[name]['miou']:.4f} after {args.iterations} steps of {args.batch_size} "
            f"{args.crop}x{args.crop} crops ({rows[name]['train_s']:.0f} s)",
            flush=True,
        )
        if args.int8:
            rows[name].update(int8_miou(name, net, val_set, args.calibration_images))
            print(
                f"{name}: int8 file's val mIoU {rows[name]['int8_miou']:.4f} "
                f"({rows[name]['int8_miou'] - rows[name]['miou']:+.4f}; agrees with float on "
                f"{rows[name]['int8_agreement']:.2%} of the check pixels)",
                flush=True,
            )

    theirs = rows[PEER]
    print()
    int8 = f"{'int8 mIoU':>10}" if args.int8 else ""
    print(f"{'':28}{'parameters':>12}{'img/s @' + str(args.throughput_crop):>12}{'val mIoU':>10}{int8}")
    for name, r in rows.items():
        int8 = f"{r['int8_miou']:>10.4f}" if args.int8 else ""
        print(f"{name[-28:]:28}{r['parameters']:>12,}{r['images_per_s']:>12.2f}{r['miou']:>10.4f}{int8}")
    for name in args.models:
        ours = rows[name]
        print(f"{name}: throughput ratio to lraspp {ours['images_per_s'] / theirs['images_per_s']:.2f}x")
        print(
            f"{name}: parameter ratio to lraspp {ours['parameters'] / theirs['parameters']:.3f} "
            f"({'at most' if ours['parameters'] * 3 <= theirs['parameters'] else 'more than'} a third)"
        )
        print(
            f"{name}: mIoU difference to lraspp {ours['miou'] - theirs['miou']:+.4f} "
            f"({'at least' if ours['miou'] >= theirs['miou'] else 'below'} LRASPP)"
        )
        if args.int8:
            print(f"{name}: int8 mIoU difference to lraspp int8 {ours['int8_miou'] - theirs['int8_miou']:+.4f}")


if __name__ == "__main__":
    main()
