"""Data parallelism on PyTorch's own engine: the process group that ``torchrun`` describes, and the few
collectives that search, training and evaluation share.

``torchrun`` (or ``--nproc N``, see ``launch``) starts one process per device and sets RANK,
WORLD_SIZE and LOCAL_RANK; ``process_group`` joins them (gloo on CPU, nccl on CUDA) with a timeout on
every collective, so a hung peer ends the run instead of blocking it. Every helper here is a no-op on a
single process, so the library has one code path.

Collectives: ``Group`` is the one place that calls them and knows the communication device the backend
requires (nccl: CUDA tensors only, on this rank's GPU; gloo: CPU tensors). Losses, confusion matrices,
gradients and objects reach it through the helpers below, which move tensors there and back, whatever
device the computation ran on (the search computes on CPU even under nccl).

Data order: ``shard_loader`` gives each rank its share of the same shuffled order (torch's
``DistributedSampler``), and every item's augmentation draws from a generator seeded by (seed, epoch,
index), not from the process's RNG stream. The global batch k of N processes is then exactly the batch
k of one process with N times the batch, which is what makes runs on different world sizes comparable
and resumable into each other.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from rspnet_zoo.errors import ZooError
from rspnet_zoo.training.loading import LoaderSettings

TIMEOUT_ENV = "RSPNET_ZOO_DIST_TIMEOUT"
LAUNCHER_ENV = "RSPNET_ZOO_LAUNCHER"  # set by --nproc, whose launcher names a failed rank itself
DEFAULT_TIMEOUT_S = 300  # the longest a collective may wait for a peer
BACKENDS = ("gloo", "nccl")


def launched() -> bool:
    """Started by torchrun (or another launcher that sets the torch.distributed environment)?"""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


class Group:
    """The process group as the library uses it: this process's rank, the world size, and the collectives,
    which take tensors on the group's communication device only (nccl: this rank's GPU; gloo: the CPU).

    ``process_group`` installs the one torchrun describes; ``using`` installs any other (a test's stand-in
    with the same rule). The helpers below move tensors to ``device`` with ``to_wire`` and back with
    ``from_wire``: no collective is called anywhere else.
    """

    def __init__(self, backend: str, device: torch.device):
        self.backend, self.device = backend, device

    def rank(self) -> int:
        return dist.get_rank()

    def world_size(self) -> int:
        return dist.get_world_size()

    def to_wire(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on the communication device (itself when it is there already: pass one you own)."""
        return tensor.to(self.device)

    def from_wire(self, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        return tensor.to(device)

    def all_reduce(self, tensor: torch.Tensor) -> None:
        """Sum ``tensor`` (on ``device``) over the ranks, in place."""
        dist.all_reduce(tensor)

    def broadcast_objects(self, objects: list, src: int) -> None:
        dist.broadcast_object_list(objects, src=src, device=self.device)

    def all_gather_object(self, obj: Any) -> list:
        out = [None] * self.world_size()
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)


def communication_device(backend: str) -> torch.device:
    """Where a backend's collectives take their tensors: nccl this rank's GPU, gloo the CPU."""
    if backend == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


_group: Group | None = None  # set by ``process_group`` and ``using``
_alone = False  # set by ``alone()``


def active() -> bool:
    return not _alone and _group is not None


@contextmanager
def using(group: Group) -> Iterator[Group]:
    """Run the enclosed code as a process of ``group`` (``process_group`` uses it for torch's group; tests
    for a stand-in that checks what reaches the collectives)."""
    global _group
    previous, _group = _group, group
    try:
        yield group
    finally:
        _group = previous


@contextmanager
def alone() -> Iterator[None]:
    """This process as if it were the only one: no collectives, its own data. For work one rank does while
    the others wait at their next collective (the search plan's timed probe steps)."""
    global _alone
    previous, _alone = _alone, True
    try:
        yield
    finally:
        _alone = previous


def rank() -> int:
    return _group.rank() if active() else 0


def world_size() -> int:
    return _group.world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def backend() -> str | None:
    return _group.backend if active() else None


def timeout_s() -> int:
    return int(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def device(requested: torch.device | None) -> torch.device | None:
    """Under a GPU backend (nccl) each process computes on its group's GPU; otherwise the requested device."""
    if active() and _group.device.type == "cuda":
        return _group.device
    return requested


class PeerLost(Exception):
    """Another process of the run died or stopped answering (a collective failed or timed out)."""


def _collective_failure(e: BaseException) -> bool:
    words = ("gloo", "nccl", "connection", "timed out", "timeout", "closed by peer", "broken pipe")
    return isinstance(e, (dist.DistError, PeerLost)) or any(w in str(e).lower() for w in words)


@contextmanager
def process_group(requested: str | None = None) -> Iterator[None]:
    """Join the process group torchrun describes (nothing to do without torchrun) and leave it after.

    A collective that fails or waits past ``timeout_s()`` (a peer killed, hung or gone) ends this
    process with one line from rank 0 and exit code 1: the run's last checkpoint stays for ``--resume``.
    SIGTERM (torchrun stopping the survivors) ends it the same way.
    """
    if requested is not None and requested not in BACKENDS:
        raise ZooError(f"unknown backend '{requested}' (choose {', '.join(BACKENDS)})")
    if not launched() or _group is not None:
        if requested is not None and not launched():
            raise ZooError("--backend applies to runs started by torchrun or --nproc")
        yield
        return
    chosen = requested or default_backend()
    if chosen == "nccl":
        if not torch.cuda.is_available():
            raise ZooError("the nccl backend needs CUDA GPUs; use --backend gloo on CPU")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(chosen, timeout=timedelta(seconds=timeout_s()))
    group = Group(chosen, communication_device(chosen))
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        with using(group):
            yield
            # every rank leaves together: a rank tearing gloo down while a peer's pair threads still run it
            # aborted now and then ("terminate called without an active exception", SIGABRT)
            group.barrier()
    except BaseException as e:
        if not _collective_failure(e):
            dist.destroy_process_group()
            raise
        if group.rank() == 0 and not os.environ.get(LAUNCHER_ENV):
            print(
                f"rspnet-zoo: error: another process of this {group.world_size()}-process run stopped "
                f"({_cause(e)}); rerun with --resume to continue from the last checkpoint",
                file=sys.stderr,
                flush=True,
            )
        os._exit(1)  # the group is broken: leaving it cleanly would wait for the dead peer
    else:
        dist.destroy_process_group()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cause(e: BaseException) -> str:
    """The gist of a backend's error: 'Read error [127.0.0.1]:33998: Connection reset by peer'."""
    first = re.sub(r"^\[[^\]]*\]\s*", "", str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    return first.split(". ")[0][:160]


def _stopped(signum, frame) -> None:
    raise PeerLost("stopped by the launcher (SIGTERM) after another process failed")


def barrier() -> None:
    if active():
        _group.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (pickled)."""
    if not active():
        return obj
    box = [obj]
    _group.broadcast_objects(box, src)
    return box[0]


def on_main(fn, *args, **kwargs) -> Any:
    """Run ``fn`` on rank 0 only (file checks, reads, deletions); its result, or the ``ZooError`` it
    raised, reaches every rank, so a refusal ends all processes alike instead of leaving them waiting."""
    result, error = None, None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except ZooError as e:
            error = e
    result, error = broadcast_object((result, error))
    if error is not None:
        raise error
    return result


def _summed(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over the ranks, reduced on the group's device and returned on the tensor's."""
    wire = _group.to_wire(tensor)
    _group.all_reduce(wire)
    return _group.from_wire(wire, tensor.device)


def average_(tensors: Sequence[torch.Tensor]) -> None:
    """Replace each tensor by its mean over the ranks, in place, with one all-reduce (what DDP does to
    gradients; the search calls it itself because its bilevel step takes gradients by autograd.grad,
    which DDP's backward hooks never see)."""
    if not active() or not tensors:
        return
    flat = _summed(torch.cat([t.reshape(-1) for t in tensors])) / world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def mean(value: float) -> float:
    """The mean of a number over the ranks (losses for the log)."""
    if not active():
        return value
    return float(_summed(torch.tensor([float(value)], dtype=torch.float64))) / world_size()


def sum_(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over the ranks (the confusion matrix: counts add exactly)."""
    if not active():
        return tensor
    return _summed(tensor.clone())


def digest(tensors: Sequence[torch.Tensor]) -> str:
    """sha256 of the tensors' bytes: equal digests, bit-identical tensors."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_same(value: str, what: str) -> None:
    """Raise unless every rank holds the same ``value`` (a digest: cheap to gather at each decode)."""
    if not active():
        return
    values = _group.all_gather_object(value)
    odd = [r for r, v in enumerate(values) if v != values[0]]
    if odd:
        raise RuntimeError(f"the {what} differ across ranks (ranks {odd} disagree with rank 0)")


def global_batch(per_process: int) -> int:
    return per_process * world_size()


def describe(per_process: int) -> str:
    """'global batch 8 = 4 per process x 2 processes (gloo)'; for the CLI and the provenance."""
    if world_size() == 1:
        return f"global batch {per_process} (1 process)"
    return (
        f"global batch {global_batch(per_process)} = {per_process} per process x {world_size()} processes ({backend()})"
    )


class _SeededItems(Dataset):
    """``dataset`` read by ``(epoch, i)``: item ``i`` drawn with torch's RNG seeded from (seed, epoch, i), the
    same augmentation whichever process, loader worker or position reads it."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(((self.seed * 1_000_003 + epoch) * 10_000_019 + index) % 2**63)
            return self.dataset[index]


class _WithEpoch(Sampler):
    """A ``DistributedSampler``'s indices, each paired with the sampler's epoch: the key ``_SeededItems`` reads,
    which reaches loader workers that outlive an epoch (persistent workers) with every index."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class ShardedEpochs:
    """This rank's batches of each shuffled epoch of ``dataset`` (see the module docstring), through one
    ``DataLoader`` for the whole run, so that its loader processes may stay up between epochs
    (``LoaderSettings.persistent_workers``)."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        seed: int,
        drop_last: bool,
        loading: LoaderSettings = LoaderSettings(),
    ):
        self.sampler = DistributedSampler(
            dataset, num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed, drop_last=drop_last
        )
        self.loader = DataLoader(
            _SeededItems(dataset, seed),
            batch_size=batch_size,
            sampler=_WithEpoch(self.sampler),
            drop_last=drop_last,
            **loading.dataloader_options(),
        )

    def epoch(self, epoch: int) -> DataLoader:
        """The loader, set to ``epoch``: iterate it before asking for another epoch."""
        self.sampler.set_epoch(epoch)
        return self.loader


def shard_loader(
    dataset: Dataset, batch_size: int, *, seed: int, epoch: int, drop_last: bool, num_workers: int = 0
) -> DataLoader:
    """This rank's batches of one shuffled epoch (see the module docstring)."""
    loading = LoaderSettings(workers=num_workers)
    return ShardedEpochs(dataset, batch_size, seed=seed, drop_last=drop_last, loading=loading).epoch(epoch)


def eval_shard(dataset: Dataset) -> Dataset:
    """Every ``world_size()``-th item from this rank on: each item is evaluated once, none padded in
    (``DistributedSampler`` would repeat items to even the shares and count them twice)."""
    if world_size() == 1:
        return dataset
    shard = Subset(dataset, range(rank(), len(dataset), world_size()))
    shard.num_classes = dataset.num_classes
    shard.class_names = getattr(dataset, "class_names", None)
    return shard
