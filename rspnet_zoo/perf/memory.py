"""A process that runs a network again and again should keep the memory it frees.

glibc's malloc returns a freed block above its mmap threshold (128 KB at start, raised as blocks are freed,
to 32 MB at most) to the kernel, and trims the free top of its heap; the next call faults every page back
in, zeroed: thousands of page faults a call for a segmentation network at 512x1024, a large share of its
latency, and a different share for each network (``benchmarks/bench_memory.py`` measures both sides
interleaved; docs/benchmarks.md has its runs). How many pages a call faults depends on what the process
allocated before, so a latency table timed units in one state and networks in another, and its predictions
missed the networks with large activations. A caching allocator keeps freed blocks (PyTorch's on CUDA;
jemalloc or tcmalloc where they are preloaded); on glibc ``mallopt`` does: no mmap for big blocks, no
trimming. The price is the one every caching allocator pays: the process keeps its peak memory.
"""

from __future__ import annotations

import ctypes
import functools
import platform

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def allocator() -> str:
    """What ``keep_freed_memory`` makes of this process's allocator (a latency table records it)."""
    return "glibc, freed memory kept" if _glibc() is not None else "the system's"


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks for the process's lifetime (module docstring); False where
    the allocator is not glibc and is left as it is. Call it in a process that serves a network; the
    latency tables and ``rspnet-zoo bench`` time networks under it."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)) and bool(libc.mallopt(M_MMAP_MAX, 0))
