"""The GPU paths in minutes, on one CUDA GPU: what the CPU test suite can only hold with stand-ins.

Runs, each as its own process with a time limit, in a fresh zoo home:

1. ``train`` under ``torchrun --nproc_per_node 1`` with the nccl backend (collectives on the GPU, DDP,
   loader workers with pinned memory and persistent workers), then ``eval`` and a smoke ``search`` the same way;
2. training steps with ``--amp fp16`` (gradient scaler) and ``--amp bf16 --channels-last``, one process;
3. ``bench --device cuda`` of rspnet_small and rspnet_c against torchvision's LRASPP MobileNetV3-Large,
   eager, folded (``--optimize``), ``torch.compile`` and onnxruntime's CUDA provider where installed.

Each step's command, exit code and wall time are printed, the benchmark tables in full; the exit code is
the number of failed steps. ``--dry-run`` prints the commands without running them (any machine).

    python benchmarks/gpu_check.py               # on a GPU machine; about 3-5 minutes
    python benchmarks/gpu_check.py --dry-run     # what it would run
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "rspnet_zoo")
ZOO = ("-m", "rspnet_zoo")
TRAIN = ("train", "rspnet_small", "--length", "64", "--crop", "256", "--batch-size", "8", "--iterations", "12")
PEER = "lraspp_mobilenet_v3_large"


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[str, ...]  # after the python executable
    timeout_s: int
    show_output: bool = False  # print its stdout in full (the benchmark tables)


def onnxruntime_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def steps(run_dir: Path, with_onnxruntime: bool) -> list[Step]:
    nccl = ("--backend", "nccl")
    bench = ("bench", "rspnet_small", "rspnet_c", "--compare", PEER, "--device", "cuda", "--rounds", "20")
    runtimes = [
        ("bench eager", ()),
        ("bench folded", ("--optimize",)),
        ("bench torch.compile", ("--runtime", "compile")),
    ]
    if with_onnxruntime:
        runtimes.append(("bench onnxruntime CUDA provider", ("--runtime", "onnxruntime")))
    return [
        Step(
            "torchrun nccl train",
            (*TORCHRUN, *TRAIN, *nccl, "--tag", "nccl", "--out", str(run_dir / "train"), "--json"),
            150,
        ),  # fmt: skip
        Step("torchrun nccl eval", (*TORCHRUN, "eval", "rspnet_small.nccl", "--length", "32", *nccl, "--json"), 60),
        Step(
            "torchrun nccl smoke search",
            (
                *TORCHRUN,
                "search",
                "--budget",
                "smoke",
                "--samples",
                "32",
                *nccl,
                "--no-progress",
                "--json",
                "--out",
                str(run_dir / "search.json"),
                "--run-dir",
                str(run_dir / "search"),
            ),
            120,
        ),  # fmt: skip
        Step(
            "train --amp fp16",
            (
                *ZOO,
                *TRAIN,
                "--amp",
                "fp16",
                "--device",
                "cuda",
                "--tag",
                "fp16",
                "--out",
                str(run_dir / "fp16"),
                "--json",
            ),
            90,
        ),  # fmt: skip
        Step(
            "train --amp bf16 --channels-last",
            (
                *ZOO,
                *TRAIN,
                "--amp",
                "bf16",
                "--channels-last",
                "--device",
                "cuda",
                "--tag",
                "bf16",
                "--out",
                str(run_dir / "bf16"),
                "--json",
            ),
            90,
        ),  # fmt: skip
        *(Step(name, (*ZOO, *bench, *extra), 150, show_output=True) for name, extra in runtimes),
    ]


def summary(step: Step, stdout: str) -> str:
    """The figures a step's JSON reports: loss and throughput of a training, mIoU of an evaluation."""
    try:
        info = json.loads(stdout)
    except json.JSONDecodeError:
        return ""
    if "history" in info:
        last = info["history"][-1]
        return f"{info['steps']} steps, loss {last['loss']:.4f}, {last['images_per_s']:.1f} img/s, {info['parallel']}"
    if "miou" in info:
        return f"mIoU {info['miou']:.4f} over {info['images']} images"
    if "sha256" in info:
        return f"wrote {info['out']} ({info['parallel']})"
    return ""


def environment() -> str:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device"
    nccl = ".".join(map(str, torch.cuda.nccl.version()))
    bf16 = "yes" if torch.cuda.is_bf16_supported() else "no"
    versions = f"torch {torch.__version__}, CUDA {torch.version.cuda}, nccl {nccl}"
    return f"{torch.cuda.get_device_name(0)}, {versions}, bf16 {bf16}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--keep", type=Path, default=None, help="run folder to keep (default: a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        run_dir = args.keep or Path(tmp)
        plan = steps(run_dir, with_onnxruntime=onnxruntime_cuda() or args.dry_run)
        if args.dry_run:
            print(f"gpu_check --dry-run: {len(plan)} steps in a fresh zoo home; onnxruntime's only where it has CUDA")
            for step in plan:
                print(f"# {step.name} (limit {step.timeout_s} s)")
                print(shlex.join(["python", *step.args]))
            return 0
        where = environment()
        print(f"gpu_check: {where}", flush=True)
        if where == "no CUDA device":
            print("gpu_check: error: no CUDA device here; --dry-run prints what would run", file=sys.stderr)
            return 2
        env = dict(os.environ, PYTHONPATH=str(ROOT), RSPNET_ZOO_HOME=str(run_dir / "zoo-home"))
        failed, started = 0, time.perf_counter()
        for step in plan:
            begun = time.perf_counter()
            try:
                proc = subprocess.run(
                    [sys.executable, *step.args],
                    env=env,
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=step.timeout_s,
                )
                code, out, err = proc.returncode, proc.stdout, proc.stderr
            except subprocess.TimeoutExpired as e:
                code, out, err = "timeout", e.stdout or "", e.stderr or ""
                out, err = (s.decode() if isinstance(s, bytes) else s for s in (out, err))
            seconds = time.perf_counter() - begun
            verdict = "ok" if code == 0 else f"FAILED ({code})"
            failed += code != 0
            print(f"\n== {step.name}: {verdict} in {seconds:.0f} s  {summary(step, out) if code == 0 else ''}")
            print(f"   {shlex.join(['python', *step.args])}")
            if step.show_output and code == 0:
                print(out.rstrip())
            if code != 0:
                print("\n".join((err or out).strip().splitlines()[-15:]))
            sys.stdout.flush()
        print(f"\ngpu_check: {len(plan) - failed} of {len(plan)} steps passed in {time.perf_counter() - started:.0f} s")
        return failed


if __name__ == "__main__":
    sys.exit(main())
