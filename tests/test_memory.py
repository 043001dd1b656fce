"""keep_freed_memory: a block freed and allocated again costs no page faults, which is what the latency
tables and `rspnet-zoo bench` time under. Checked in a fresh interpreter, whose glibc starts from its
defaults whatever this session called before."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

SCRIPT = """
import resource
import torch
from rspnet_zoo import keep_freed_memory

def faults():  # minor page faults of allocating and writing 64 MB, the same size just freed
    x = torch.ones(16 * 2**20)
    del x
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 * 2**20)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults()
kept = keep_freed_memory()
faults()  # the first block after the call is carved from the heap: faulted in once
print(default, kept, faults(), keep_freed_memory())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_memory_is_kept_so_a_block_allocated_again_faults_no_pages():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    default, kept, after, again = done.stdout.split()
    assert int(default) > 4096  # 64 MB of 4 KB pages handed back to the kernel and faulted in again
    assert kept == "True" and again == "True"
    assert int(after) < 64
