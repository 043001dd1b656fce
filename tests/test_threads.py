"""The thread policy for shared machines (rspnet_zoo.perf.threads), on fake load: passive OpenMP waiting and
as many threads as cores are free, unless the user chose; a warning when a run got far less CPU than wall time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rspnet_zoo.perf.threads import (
    NUM_THREADS,
    WAIT_POLICY,
    CpuShare,
    busy_cores,
    free_threads,
    share_among_workers,
    warn_if_starved,
)

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    "cores, busy, threads",
    [(2, 0.0, 2), (2, 0.4, 2), (2, 1.0, 1), (2, 1.6, 1), (2, 8.0, 1), (1, 0.0, 1), (16, 3.6, 12), (16, 0.2, 16)],
)
def test_threads_take_the_cores_that_are_free(cores, busy, threads):
    assert free_threads(cores, busy) == threads


@given(cores=st.integers(1, 256), busy=st.floats(0, 1000))
def test_there_is_always_a_thread_and_never_more_than_cores(cores, busy):
    assert 1 <= free_threads(cores, busy) <= cores


@pytest.mark.parametrize(
    "loadavg, cores, machine, busy",
    [
        ("1.00 0.80 0.50 2/300 42", 2, 2, 1.0),  # another process running: one core busy
        ("1.80 1.20 0.60 1/300 42", 2, 2, 0.0),  # only this one runs: the load is work that just ended
        ("0.30 0.20 0.10 4/300 42", 2, 2, 0.3),  # short bursts: the minute's average
        ("32.0 30.0 30.0 41/900 42", 4, 64, 2.0),  # a 4-core container on a busy 64-core host
        ("garbled", 2, 2, None),  # unreadable: the load average alone
    ],
)
def test_busy_cores_on_fake_load(loadavg, cores, machine, busy):
    found = busy_cores(cores, loadavg, machine)
    if busy is None:
        assert found >= 0
    else:
        assert found == pytest.approx(busy)


def _fresh_process(code: str, env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in (WAIT_POLICY, NUM_THREADS)}
    result = subprocess.run(
        [sys.executable, "-c", code], env={**clean, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_cli_sets_passive_waiting_and_free_threads_before_torch_loads():
    code = (
        "import os, sys\nfrom rspnet_zoo.cli.app import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n"
        "    pass\nprint(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OMP_NUM_THREADS'), 'torch' in sys.modules)"
    )
    policy, threads, torch_loaded = _fresh_process(code, {}).split()[-3:]
    assert policy == "PASSIVE" and 1 <= int(threads) <= len(os.sched_getaffinity(0)) and torch_loaded == "False"
    policy, threads, _ = _fresh_process(code, {WAIT_POLICY: "ACTIVE", NUM_THREADS: "3"}).split()[-3:]
    assert (policy, threads) == ("ACTIVE", "3")  # the user's choice stands


@pytest.mark.slow
def test_a_choice_in_the_environment_reaches_torch():
    out = _fresh_process(
        "from rspnet_zoo.perf.threads import prefer_shared_machine\n"
        "prefer_shared_machine(cores=4, busy=2.7)\nimport torch\nprint(torch.get_num_threads())",
        {},
    )
    assert out.split() == ["1"]  # 4 cores, 3 busy


def test_once_torch_is_loaded_nothing_is_set():
    from rspnet_zoo.perf.threads import prefer_shared_machine

    env: dict[str, str] = {}
    assert prefer_shared_machine(env, cores=4, busy=0.0) == {} and env == {}


@pytest.mark.parametrize(
    "environ, chosen, expected",
    [
        ({}, {}, "2"),  # nothing set: the free cores shared
        ({NUM_THREADS: "4"}, {NUM_THREADS: "4"}, "2"),  # set by the policy: shared out again
        ({NUM_THREADS: "3"}, {}, "3"),  # set by the user: kept
    ],
)
def test_workers_share_the_free_cores_unless_the_user_chose(environ, chosen, expected):
    share_among_workers(2, chosen, environ, cores=8, busy=4.2)
    assert environ[NUM_THREADS] == expected


def test_a_starved_run_is_named_in_one_line():
    share = CpuShare(wall_s=40.0, cpu_s=8.0, threads=2, load=2.3, cores=2)
    assert share.starved
    line = share.warning()
    assert "\n" not in line and "0.20 s of CPU time per second" in line and "2 threads" in line
    assert "load average 2.30" in line and "fewer --threads" in line
    assert "fewer --threads" not in CpuShare(40.0, 8.0, 1, 2.3, 2).warning()
    assert not CpuShare(wall_s=10.0, cpu_s=9.0, threads=1, load=0.1, cores=2).starved


def test_a_block_that_waits_is_reported_once_and_only_when_enabled():
    said: list[str] = []
    with warn_if_starved(lambda: 1, said.append):
        time.sleep(0.2)  # no CPU time at all
    with warn_if_starved(lambda: 1, said.append, enabled=False):
        time.sleep(0.2)
    assert len(said) == 1 and "1 thread:" in said[0]


@pytest.mark.slow
def test_bench_threads_follow_the_users_environment():
    code = (
        "from rspnet_zoo.cli.app import main\n"
        "main(['bench', 'rspnet_small', '--size', '16x16', '--rounds', '1', '--json'])"
    )
    clean = {k: v for k, v in os.environ.items() if k != WAIT_POLICY}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(ROOT), NUM_THREADS: "1"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["threads"] == 1
