"""benchmarks/gpu_check.py: its dry run names every GPU path it checks, on any machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_the_dry_run_lists_the_gpu_paths():
    proc = run("--dry-run")
    assert proc.returncode == 0, proc.stderr
    commands = [line for line in proc.stdout.splitlines() if line.startswith("python ")]
    torchrun = [c for c in commands if "torch.distributed.run --standalone --nproc_per_node 1" in c]
    assert [c.split(" rspnet_zoo ")[1].split()[0] for c in torchrun] == ["train", "eval", "search"]
    assert all("--backend nccl" in c for c in torchrun)
    assert any("--amp fp16" in c and "--device cuda" in c for c in commands)
    assert any("--amp bf16 --channels-last" in c and "--device cuda" in c for c in commands)
    bench = [c for c in commands if " bench rspnet_small rspnet_c --compare lraspp_mobilenet_v3_large" in c]
    assert all("--device cuda" in c for c in bench)
    assert {c.split("--rounds 20")[1].strip() for c in bench} == {
        "",
        "--optimize",
        "--runtime compile",
        "--runtime onnxruntime",
    }


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the check itself")
def test_without_a_gpu_it_says_so_in_one_line():
    proc = run()
    assert proc.returncode == 2
    assert proc.stderr.strip() == "gpu_check: error: no CUDA device here; --dry-run prints what would run"
