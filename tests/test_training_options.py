"""Training options for GPU runs, held on CPU: --amp, --channels-last, --loss ohem, --warmup-iters, --workers.

Tolerances stated: bf16 and fp16 autocast keep each of the first 4 logged losses within 2% of fp32's
(measured: within 0.5% over 6 steps); channels_last within 0.01% once dropout is off (dropout draws its
mask in memory order, so with it on the two layouts drop different pixels).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import distributed_worker
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rspnet_zoo.data import build_dataset
from rspnet_zoo.spec.io import load_spec
from rspnet_zoo.training import distributed
from rspnet_zoo.training.loading import PREFETCH_BATCHES, LoaderSettings, loader_settings
from rspnet_zoo.training.loop import load_checkpoint, poly_schedule, train
from rspnet_zoo.training.losses import OHEM_THRESHOLD, ohem_cross_entropy
from rspnet_zoo.zoo.registry import create_genotype_net
from searchers.rspnet.bilevel import Bilevel
from searchers.rspnet.budgets import Schedule

TINY = Path(__file__).parent / "data" / "tiny_net.json"
CPU = torch.device("cpu")


def tiny_model():
    torch.manual_seed(0)
    g = load_spec(TINY)
    return create_genotype_net(g.name, g, num_classes=9)


def tiny_set(length: int = 8):
    return build_dataset("synthetic", "train", crop=(32, 32), train=True, length=length)


def losses(**options) -> list[float]:
    return train(tiny_model(), tiny_set(), iterations=4, batch_size=4, lr=0.1, device=CPU, **options).losses


@pytest.fixture(scope="module")
def fp32_losses():
    return losses()


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_steps_stay_near_fp32(amp, fp32_losses):
    assert losses(amp=amp) == pytest.approx(fp32_losses, rel=0.02)


def test_channels_last_trains_alike_and_hands_back_the_usual_layout():
    def run(channels_last: bool) -> tuple[list[float], torch.nn.Module]:
        model = tiny_model()
        model.head_drop.p = 0.0  # dropout draws its mask in memory order: the one thing the layout changes
        result = train(model, tiny_set(), iterations=4, batch_size=4, lr=0.1, device=CPU, channels_last=channels_last)
        return result.losses, model

    (usual, _), (nhwc, model) = run(False), run(True)
    assert nhwc == pytest.approx(usual, rel=1e-4)
    assert all(p.is_contiguous() for p in model.parameters())  # what safetensors and every reader expect


def test_fp16_keeps_its_loss_scale_in_the_checkpoint(tmp_path):
    train(tiny_model(), tiny_set(), iterations=2, batch_size=4, device=CPU, amp="fp16", checkpoint=tmp_path / "c.pt")
    assert load_checkpoint(tmp_path / "c.pt")["scaler"]["scale"] > 0
    train(tiny_model(), tiny_set(), iterations=2, batch_size=4, device=CPU, amp="bf16", checkpoint=tmp_path / "b.pt")
    assert "scaler" not in load_checkpoint(tmp_path / "b.pt")  # bf16 needs no loss scaling


def test_loader_workers_give_the_same_training_bit_for_bit():
    def state(workers: int) -> dict:
        model = tiny_model()
        train(model, tiny_set(), epochs=2, batch_size=4, device=CPU, num_workers=workers)
        return model.state_dict()

    one, two = state(0), state(2)
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=0, atol=0, msg=name)


def test_loader_settings_are_decided_by_the_device(monkeypatch):
    """One decision for train and eval: on a GPU loader processes (this process's share of the cores, at most
    8), pinned memory with non-blocking copies, workers kept between epochs, prefetching; on the CPU none."""
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    gpu = loader_settings(torch.device("cuda"))
    assert gpu == LoaderSettings(workers=min(8, cores), pin_memory=True, persistent_workers=True)
    assert gpu.non_blocking and gpu.dataloader_options()["prefetch_factor"] == PREFETCH_BATCHES
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(4 * cores))
    assert loader_settings(torch.device("cuda")).workers == 1  # never starved of a loader process
    assert loader_settings(torch.device("cuda"), 3).workers == 3  # --workers wins
    cpu = loader_settings(CPU)
    assert cpu.dataloader_options() == dict(
        num_workers=0, pin_memory=False, persistent_workers=False, prefetch_factor=None
    )
    assert not cpu.non_blocking


@pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true but no accelerator")  # no GPU here
def test_gpu_loader_settings_draw_each_epoch_by_its_own_seed():
    """The loader as a GPU run sets it up (workers that outlive an epoch learn the epoch from each index, not
    from a dataset copy made at start) gives the batches of the CPU's loader without processes."""
    data = tiny_set(6)

    def batches(loading: LoaderSettings) -> list:
        shards = distributed.ShardedEpochs(data, 3, seed=5, drop_last=False, loading=loading)
        return [images for epoch in range(3) for images, _ in shards.epoch(epoch)]

    alone, kept = batches(loader_settings(CPU)), batches(loader_settings(torch.device("cuda"), 2))
    assert len(alone) == len(kept) == 6
    for a, b in zip(alone, kept):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(alone[0], alone[2])  # epochs differ: reshuffled and augmented anew


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 6),
    st.integers(1, 6),
    st.floats(0.05, 0.95),
    st.integers(0, 2**31 - 1),
)
def test_ohem_is_the_mean_of_the_hard_pixels_and_never_below_cross_entropy(batch, h, w, threshold, seed):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(batch, 4, h, w, generator=g)
    target = torch.randint(0, 4, (batch, h, w), generator=g)
    target[torch.rand(batch, h, w, generator=g) < 0.3] = 255
    pixels = F.cross_entropy(logits, target, ignore_index=255, reduction="none")[target != 255]
    if pixels.numel() == 0:
        assert ohem_cross_entropy(logits, target, threshold) == 0
        return
    ohem = ohem_cross_entropy(logits, target, threshold)
    keep = max(1, pixels.numel() // 16)
    hard = pixels[pixels > -math.log(threshold)]
    expected = hard.mean() if hard.numel() >= keep else pixels.topk(keep).values.mean()
    torch.testing.assert_close(ohem, expected)
    assert ohem >= pixels.mean() - 1e-6


def test_ohem_keeps_the_hardest_pixels_of_a_fitted_batch():
    target = torch.zeros(1, 4, 8, dtype=torch.long)
    logits = torch.zeros(1, 2, 4, 8)
    logits[:, 0] = 10.0  # every pixel right and confident: none above the threshold
    logits[0, 0, 0, 0] = 1.0  # one less sure (p = 0.73)
    pixels = F.cross_entropy(logits, target, reduction="none").flatten()
    assert (pixels < -math.log(OHEM_THRESHOLD)).all()
    torch.testing.assert_close(ohem_cross_entropy(logits, target), pixels.topk(2).values.mean())  # 32 // 16
    assert ohem_cross_entropy(logits, target, min_kept=1) == pixels.max()


def test_ohem_trains():
    result = train(tiny_model(), tiny_set(), iterations=4, batch_size=4, lr=0.1, device=CPU, loss="ohem")
    assert all(math.isfinite(v) for v in result.losses) and result.losses[-1] < result.losses[0]


def test_warmup_ramps_linearly_into_poly():
    poly, warm = poly_schedule(100), poly_schedule(100, warmup_steps=10)
    assert [warm(s) for s in (0, 4, 9)] == pytest.approx([poly(0) / 10, poly(4) / 2, poly(9)])
    assert all(warm(s) == poly(s) for s in range(10, 101))


def test_the_search_keeps_architecture_parameters_in_fp32_under_bf16():
    torch.manual_seed(0)
    model = distributed_worker.TinySupernet()
    before = model.alphas.detach().clone()
    bilevel = Bilevel(model, Schedule(epochs=1, order=2, lr=0.1, arch_lr=0.05), amp="bf16")
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, distributed_worker.CLASSES, (4, 8, 8))
    _, logits = bilevel.arch_step(x, y, x, y)
    bilevel.weight_step(x, y)
    assert logits.dtype == torch.bfloat16  # the forward pass ran in bf16
    assert model.alphas.dtype == model.alphas.grad.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in bilevel.a_opt.state[model.alphas].values() if v.dim())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.equal(model.alphas, before)


def test_options_are_recorded_and_a_resume_must_match(run_cli, tmp_path, zoo_home, camvid):
    data = camvid  # a small validation split
    run = ("train", str(TINY), *data, "--iterations", "2", "--crop", "16", "--batch-size", "2")
    run += ("--out", str(tmp_path / "run"), "--tag", "t")
    given = ("--amp", "bf16", "--channels-last", "--loss", "ohem", "--warmup-iters", "1", "--workers", "1")
    code, out, err = run_cli(*run, *given, "--json")
    assert code == 0, err
    command = json.loads(out)["command"]
    assert command.endswith("--amp bf16 --channels-last --loss ohem --warmup-iters 1")  # --workers: speed only
    assert command in (zoo_home / "tiny_net.t" / "README.md").read_text()
    settings = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["settings"]
    assert (settings["amp"], settings["channels_last"], settings["loss"], settings["warmup_iters"]) == (
        "bf16",
        True,
        "ohem",
        1,
    )
    code, _, err = run_cli(*run, "--loss", "ohem", "--warmup-iters", "1", "--iterations", "3", "--resume")
    assert code == 2
    assert "amp 'bf16' -> None" in err and "channels_last True -> None" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (("train", str(TINY), "--amp", "fp8"), "unknown --amp 'fp8' (choose bf16, fp16)"),
        (("train", str(TINY), "--loss", "dice"), "unknown --loss 'dice' (choose ce, ohem)"),
        (("eval", "rspnet_small", "--amp", "half"), "unknown --amp 'half' (choose bf16, fp16)"),
        (("search", "--budget", "smoke", "--amp", "fp16"), "--amp fp16: the search runs in bf16 only"),
        (("search", "--method", "template", "--amp", "bf16"), "--amp"),
        (
            ("train", str(TINY), "--iterations", "2", "--length", "4", "--crop", "16", "--warmup-iters", "2"),
            "--warmup-iters 2 leaves none of the run's 2 iterations to poly decay",
        ),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(run_cli, args, message, zoo_home):
    code, out, err = run_cli(*args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not zoo_home.exists()
