"""Every collective takes its tensors on the process group's communication device, as nccl demands.

nccl accepts CUDA tensors only; gloo, which the other distributed tests run on, takes CPU tensors and so
cannot tell a collective that forgot to move its tensor. ``MetaGroup`` keeps nccl's rule with ``meta``
standing in for CUDA: a tensor handed to a collective anywhere else is refused, as nccl would refuse it.
It is installed through ``distributed.using``, the one place the library's collectives go through; a
collective that bypassed it would find no torch process group at all. Train, eval and the smoke search
run under it on CPU, one process.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import distributed_worker
import pytest
import torch

from rspnet_zoo.training import distributed

TINY = Path(__file__).parent / "data" / "tiny_net.json"


class MetaGroup(distributed.Group):
    """One process of a group whose collectives take tensors on its device only, ``meta`` standing in for
    CUDA. Meta tensors hold no data: what was sent is remembered and, the world being one process, it is
    what a reduction returns."""

    def __init__(self):
        super().__init__("nccl-like", torch.device("meta"))
        self.calls: Counter[str] = Counter()
        self._sent: dict[int, torch.Tensor] = {}

    def rank(self) -> int:
        return 0

    def world_size(self) -> int:
        return 1

    def to_wire(self, tensor: torch.Tensor) -> torch.Tensor:
        wire = super().to_wire(tensor)
        self._sent[id(wire)] = tensor.detach().clone()
        return wire

    def from_wire(self, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        self._require(tensor, "from_wire")
        return self._sent.pop(id(tensor)).to(device)

    def all_reduce(self, tensor: torch.Tensor) -> None:
        self._require(tensor, "all_reduce")
        self.calls["all_reduce"] += 1

    def broadcast_objects(self, objects: list, src: int) -> None:
        self.calls["broadcast_objects"] += 1

    def all_gather_object(self, obj: Any) -> list:
        self.calls["all_gather_object"] += 1
        return [obj]

    def barrier(self) -> None:
        self.calls["barrier"] += 1

    def _require(self, tensor: torch.Tensor, what: str) -> None:
        if tensor.device != self.device:
            raise RuntimeError(f"{what}: tensors must be on {self.device}, got one on {tensor.device}")


def test_the_stand_in_refuses_what_nccl_refuses():
    group = MetaGroup()
    with pytest.raises(RuntimeError, match="must be on meta, got one on cpu"):
        group.all_reduce(torch.ones(2))
    with distributed.using(group):
        assert distributed.active() and distributed.backend() == "nccl-like"
        assert distributed.sum_(torch.tensor([3, 4])).tolist() == [3, 4]
        assert distributed.mean(2.5) == 2.5
    assert group.calls["all_reduce"] == 2 and not group._sent
    assert not distributed.active()


def test_bilevel_steps_reduce_on_the_group_device():
    with distributed.using(MetaGroup()) as group:
        steps = distributed_worker.bilevel_steps(order=2, steps=1)
    alone = distributed_worker.bilevel_steps(order=2, steps=1)
    assert group.calls["all_reduce"] == 4  # the virtual step's, the perturbation's, the architecture's, the weights'
    for name, value in alone.items():
        torch.testing.assert_close(steps[name], value, rtol=0, atol=0)


def test_train_and_eval_run_under_an_nccl_like_group(run_cli, tmp_path, zoo_home, camvid):
    data = camvid
    args = ("--iterations", "2", "--crop", "16", "--batch-size", "2", "--tag", "t", "--out", str(tmp_path / "run"))
    with distributed.using(MetaGroup()) as group:
        code, _, err = run_cli("train", str(TINY), *data, *args, "--json")
        assert code == 0, err
        trained = group.calls["all_reduce"]
        code, _, err = run_cli("eval", str(zoo_home / "tiny_net.t"), *data, "--json")
        assert code == 0, err
    assert trained == 2 + 2  # a loss per step (2), the confusion matrix and image count of the one validation
    assert group.calls["all_reduce"] - trained == 2
    assert group.calls["broadcast_objects"] >= 1  # the run folder's claim on rank 0


def test_smoke_search_runs_under_an_nccl_like_group(run_cli, tmp_path, one_torch_thread):
    with distributed.using(MetaGroup()) as group:
        code, _, err = run_cli(
            "search",
            "--budget",
            "smoke",
            "--samples",
            "16",
            "--batch-size",
            "8",
            "--no-progress",
            "--out",
            str(tmp_path / "s.json"),
        )
    assert code == 0, err
    assert (tmp_path / "s.json").is_file()
    assert group.calls["all_reduce"] > 0 and group.calls["all_gather_object"] >= 2  # both stages' decodes
