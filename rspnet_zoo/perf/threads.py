"""CPU threads that hold up on a shared machine: the one place the thread policy lives.

PyTorch runs an op's intra-op threads under OpenMP, and by default (GNU OpenMP's ``OMP_WAIT_POLICY``
unset) a thread that finishes its share spins, waiting for the others, before the next op. While every
thread has a core to itself that is fast; when other work takes a core for a scheduler slice, the whole
team waits on the thread that lost it, at every op, and a run can become several times slower than one
thread alone, with the spinning threads burning the CPU time the other work needed. Two settings avoid it:

* ``OMP_WAIT_POLICY=PASSIVE``: waiting threads sleep instead of spinning. OpenMP reads it once, when torch
  loads it, so ``prefer_shared_machine`` sets it at the start of the process, before torch is imported;
* as many threads as there are cores free: the cores this process may run on (``os.sched_getaffinity``)
  less the busy ones (``busy_cores``: the 1-minute load average, capped by what is runnable now), at
  least one.

Both apply only where the user has not chosen: an ``OMP_WAIT_POLICY`` or ``OMP_NUM_THREADS`` already in the
environment, or a ``--threads`` flag, wins. ``CpuShare`` says when a run got far less CPU time than wall
time (the sign of cores shared with other work), so the CLI can say so. Nothing here imports torch.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOADAVG = "/proc/loadavg"
WAIT_POLICY = "OMP_WAIT_POLICY"
NUM_THREADS = "OMP_NUM_THREADS"
STARVED = 0.5  # a run that got less than half a core per second of wall time shared its cores


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def load_average() -> float:
    """Runnable processes over the last minute (0 where the system does not say)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def busy_cores(cores: int, loadavg: str | None = None, machine_cores: int | None = None) -> float:
    """How many of ``cores`` other work keeps busy: the 1-minute load average, but no more than the processes
    runnable right now besides this one (a load average still counts work that has just ended), shared
    evenly over the machine's CPUs (in a container the load is the host's). ``loadavg``: the text of
    Linux's /proc/loadavg, read when not given; elsewhere the load average alone."""
    try:
        fields = (Path(LOADAVG).read_text() if loadavg is None else loadavg).split()
        busy = min(float(fields[0]), int(fields[3].split("/")[0]) - 1)
    except (OSError, IndexError, ValueError):
        busy = load_average()
    machine = machine_cores or os.cpu_count() or cores
    return max(0.0, busy) * cores / max(cores, machine)


def free_threads(cores: int | None = None, busy: float | None = None) -> int:
    """Threads for the cores that are free: ``cores`` less the ``busy`` ones (rounded), at least one."""
    cores = usable_cores() if cores is None else cores
    busy = busy_cores(cores) if busy is None else busy
    return max(1, min(cores, cores - round(busy)))


def prefer_shared_machine(
    environ: MutableMapping[str, str] | None = None, cores: int | None = None, busy: float | None = None
) -> dict[str, str]:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` and ``OMP_NUM_THREADS`` to ``free_threads()`` in ``environ`` (the
    process environment), each only where the user has not set it; returns what it set. OpenMP reads both
    once, as torch loads it: in a process that has imported torch already this sets nothing."""
    environ = os.environ if environ is None else environ
    if "torch" in sys.modules:
        return {}
    chosen = {WAIT_POLICY: "PASSIVE", NUM_THREADS: str(free_threads(cores, busy))}
    chosen = {key: value for key, value in chosen.items() if not environ.get(key)}
    environ.update(chosen)
    return chosen


def share_among_workers(
    nproc: int,
    chosen: Mapping[str, str],
    environ: MutableMapping[str, str] | None = None,
    cores: int | None = None,
    busy: float | None = None,
) -> None:
    """``OMP_NUM_THREADS`` for each of ``nproc`` worker processes started from this one: the free cores
    shared out among them, unless the user set it (it is in ``environ`` but not in ``chosen``, what
    ``prefer_shared_machine`` set)."""
    environ = os.environ if environ is None else environ
    if environ.get(NUM_THREADS) and NUM_THREADS not in chosen:
        return
    environ[NUM_THREADS] = str(max(1, free_threads(cores, busy) // nproc))


def threads_phrase(threads: int) -> str:
    return f"{threads} thread{'' if threads == 1 else 's'}"


@dataclass(frozen=True)
class CpuShare:
    """CPU time a run got over its wall time, with ``threads`` intra-op threads."""

    wall_s: float
    cpu_s: float
    threads: int
    load: float
    cores: int

    @property
    def per_second(self) -> float:
        """Cores' worth of CPU time per second of wall time."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def starved(self) -> bool:
        return self.per_second < STARVED

    def warning(self) -> str:
        fewer = "; fewer --threads may be faster" if self.threads > 1 else ""
        return (
            f"this run got {self.per_second:.2f} s of CPU time per second ({self.cpu_s:.1f} s in {self.wall_s:.1f} s) "
            f"with {threads_phrase(self.threads)}: other work shares the {self.cores} cores "
            f"(load average {self.load:.2f}){fewer}"
        )


@contextmanager
def warn_if_starved(threads: Callable[[], int], say: Callable[[str], None], enabled: bool = True) -> Iterator[None]:
    """Time the block in CPU and wall time; when it ends normally and got less than ``STARVED`` of a core
    per second, ``say`` one line (``CpuShare.warning``). ``threads`` is read at the end, once the block set them.
    Leave ``enabled`` off where the work is not on the CPU (a CUDA device)."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    share = CpuShare(time.perf_counter() - wall, time.process_time() - cpu, threads(), load_average(), usable_cores())
    if enabled and share.starved:
        say(share.warning())
