"""A decoder searched over MobileNetV3-Large against LRASPP's head on the same timm encoder (issue 29).

1. The decoder: ``rspnet-zoo search --stage both --encoder ENCODER`` (the library call, seed 0) on the
   synthetic train split, or ``--spec`` to skip the search and take a spec it wrote.
2. LRASPP: the ``lraspp`` spec head (torchvision's LRASPPHead, 128 channels) on the same timm encoder at
   output stride 16 (torchvision's dilated MobileNetV3-Large: the gated branch reads the last level at 1/16,
   the low-level classifier the level at 1/8), or at the encoder's own 1/32 with ``--lraspp-stride 32``.
3. For each seed both networks start from one encoder initialisation (timm's, seeded, copied into both: no
   pretrained weights here, nothing downloads) and train with ``benchmarks/bench_lraspp.py``'s schedule (SGD
   momentum 0.9, poly learning rate, cross-entropy ignoring 255, the same crops in the same order); each is
   evaluated on the synthetic validation split. Printed: mIoU per seed, mean and spread (sample standard
   deviation).
4. Latency, in one run before the training: both networks untrained, eager and optimised in onnxruntime,
   interleaved rounds (``rspnet_zoo.perf.bench.measure``), median ms; the ratios, and after the training a
   verdict on the issue's goal (mIoU above LRASPP's by at least 0.02 at no more than its latency, in both
   runtimes).

    .venv/bin/python benchmarks/decoder_vs_lraspp.py                      # the run in docs/benchmarks.md
    .venv/bin/python benchmarks/decoder_vs_lraspp.py --iterations 5 --seeds 0 --search-budget smoke \\
        --latency-size 64x128 --rounds 2                                      # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import timm
import torch

from rspnet_zoo import GenotypeNet, load_spec
from rspnet_zoo.data import build_dataset
from rspnet_zoo.perf.bench import measure, prepare
from rspnet_zoo.spec.io import genotype_from_dict
from rspnet_zoo.spec.models import Genotype
from rspnet_zoo.training.loop import evaluate, train
from rspnet_zoo.zoo.stats import count_parameters
from searchers.rspnet.request import rspnet_request
from searchers.rspnet.runner import search
from searchers.rspnet.structures import ENCODER

LRASPP = "lraspp"
SEARCHED = "searched"
# A lattice small enough to price near LRASPP's head: 2 layers, F=8 at 1/4 (doubled per level), 2 paths a node.
SEARCH_SETTINGS = ("path.layers=2", "path.spec_channels=8", "path.head_channels=32")


def lraspp_spec(encoder: str, num_classes: int, stride: int = 16) -> Genotype:
    """LRASPP on ``encoder`` at output stride ``stride``: the gated branch on its deepest level (at 1/``stride``),
    the low-level classifier on its deepest level at 1/8, from timm's feature_info."""
    kwargs = {} if stride == 32 else {"output_stride": stride}
    with torch.device("meta"):
        info = timm.create_model(encoder, features_only=True, **kwargs).feature_info
    levels = {r: (i, c) for i, (r, c) in enumerate(zip(info.reduction(), info.channels()))}  # the deepest wins

    def node(node_id: str, reduction: int) -> dict:
        level, channels = levels[reduction]
        inputs = [{"paths": [{"node": "input"}]}]
        return dict(id=node_id, encoder=ENCODER, level=level, reduction=reduction, channels=channels, inputs=inputs)

    return genotype_from_dict(
        {
            "format_version": 1,
            "name": f"lraspp_{encoder}",
            "encoders": {ENCODER: {"model": encoder, "kwargs": kwargs}},
            "network": {"nodes": [node("low", 8), node("high", stride)]},
            "head": {"type": "lraspp", "input": "high", "low_level": "low"},
            "defaults": {"num_classes": num_classes},
        }
    )


def searched_spec(args: argparse.Namespace, folder: Path) -> tuple[Genotype, float]:
    """The searched decoder (``--spec``, else a search now) and the search's wall seconds (0 for ``--spec``)."""
    if args.spec:
        return load_spec(args.spec), 0.0
    overrides = {}
    for item in (*SEARCH_SETTINGS, *args.search_set):
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    request = rspnet_request(
        stage="both",
        budget=args.search_budget,
        encoder=args.encoder,
        overrides=overrides,
        out=folder / "searched.json",
        run_dir=folder / "run",
        seed=0,
    )
    started = time.perf_counter()
    summary = search(request)
    print(f"search: {request.shell_command} -> {summary['out']} ({time.perf_counter() - started:.0f} s)", flush=True)
    return load_spec(summary["out"]), time.perf_counter() - started


def build_pair(genotypes: dict[str, Genotype], num_classes: int, seed: int) -> dict[str, torch.nn.Module]:
    """Both networks, seeded, with one encoder initialisation copied into both (the same timm weights)."""
    torch.manual_seed(seed)
    nets = {name: GenotypeNet(g, num_classes=num_classes) for name, g in genotypes.items()}
    reference = nets[LRASPP].encoders[ENCODER].state_dict()
    nets[SEARCHED].encoders[ENCODER].load_state_dict(reference)  # strict: the same modules, the same weights
    return nets


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="mobilenetv3_large_100", help="timm name")
    parser.add_argument("--spec", help="a searched spec over --encoder (skips the search)")
    parser.add_argument("--search-budget", default="small")
    parser.add_argument("--search-set", nargs="*", default=[], metavar="KEY=VALUE", help="more search settings")
    parser.add_argument("--search-dir", help="the search's spec and run folder (default: temporary)")
    parser.add_argument("--lraspp-stride", type=int, choices=(16, 32), default=16, help="LRASPP's output stride")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="none: latency only")
    parser.add_argument("--iterations", type=int, default=500, help="training steps per model and seed")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=96, help="training crop of the accuracy run")
    parser.add_argument("--size", type=int, default=128, help="synthetic scene size the crops come from")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--latency-size", default="512x1024", help="HxW of the latency runs")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, timm {timm.__version__}, {args.threads} threads; load average "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )

    val_set = build_dataset("synthetic", "val", seed=0)
    num_classes = val_set.num_classes
    with tempfile.TemporaryDirectory() as tmp:
        searched, search_s = searched_spec(args, Path(args.search_dir or tmp))
    genotypes = {SEARCHED: searched, LRASPP: lraspp_spec(args.encoder, num_classes, args.lraspp_stride)}
    params = {name: count_parameters(net) for name, net in build_pair(genotypes, num_classes, 0).items()}

    h, w = (int(v) for v in args.latency_size.split("x"))
    x = torch.randn(1, 3, h, w)
    contenders = []
    for name, net in build_pair(genotypes, num_classes, 0).items():
        contenders.append(prepare(name, net, x, runtime="eager", threads=args.threads))
        contenders.append(prepare(name, net, x, runtime="onnxruntime", optimized=True, threads=args.threads))
    timing = measure(contenders, x, rounds=args.rounds, threads=args.threads)
    ms = {(r["name"], r["runtime"]): r["ms_median"] for r in timing["models"]}
    cpu = {(r["name"], r["runtime"]): r["cpu_ms_median"] for r in timing["models"]}
    ratios = {rt: ms[SEARCHED, rt] / ms[LRASPP, rt] for rt in ("eager", "onnxruntime")}
    load = timing["load_average"]
    print(
        f"latency 1x3x{h}x{w}, {args.threads} threads, median of {args.rounds} interleaved rounds, load average "
        f"{load['before'][0]:.2f} before, {load['after'][0]:.2f} after:"
    )
    for name in genotypes:
        print(
            f"  {name}: {params[name]:,} parameters; eager {ms[name, 'eager']:.1f} ms (CPU {cpu[name, 'eager']:.0f}), "
            f"onnxruntime {ms[name, 'onnxruntime']:.1f} ms (CPU {cpu[name, 'onnxruntime']:.0f})"
        )
    print(f"  latency ratio searched / lraspp: eager {ratios['eager']:.2f}, onnxruntime {ratios['onnxruntime']:.2f}")

    miou: dict[str, list[float]] = {name: [] for name in genotypes}
    for seed in args.seeds:
        train_set = build_dataset(
            "synthetic",
            "train",
            crop=(args.crop, args.crop),
            train=True,
            seed=seed,
            size=(args.size, args.size),
            length=args.iterations * args.batch_size,
        )
        for name, net in build_pair(genotypes, num_classes, seed).items():
            started = time.perf_counter()
            train(
                net,
                train_set,
                iterations=args.iterations,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=seed,
                device=torch.device("cpu"),
            )
            miou[name].append(evaluate(net, val_set, device=torch.device("cpu"))["miou"])
            print(
                f"seed {seed} {name}: val mIoU {miou[name][-1]:.4f} ({time.perf_counter() - started:.0f} s)", flush=True
            )
    if args.seeds:
        print(
            f"{args.encoder}; {len(args.seeds)} seeds x {args.iterations} steps of {args.batch_size} "
            f"{args.crop}x{args.crop} crops:"
        )
        for name in genotypes:
            print(f"  {name}: val mIoU {spread(miou[name])} (mean +- sd)")
        gain = statistics.mean(miou[SEARCHED]) - statistics.mean(miou[LRASPP])
        print(f"  mIoU difference (searched - lraspp): {gain:+.4f}")
        accurate, fast = gain >= 0.02, all(r <= 1.0 for r in ratios.values())
        verdict = "meets" if accurate and fast else "does not meet"
        print(
            f"verdict: the searched decoder {verdict} the goal (mIoU +0.02 or more: {'yes' if accurate else 'no'}; "
            f"latency at most LRASPP's in both runtimes: {'yes' if fast else 'no'})"
        )
    print(f"searched spec: {json.dumps(searched.model_dump(mode='json', exclude_defaults=True), sort_keys=True)}")
    if args.json:
        result = dict(miou=miou, parameters=params, latency=timing, search_s=search_s, args=vars(args))
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
