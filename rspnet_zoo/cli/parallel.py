"""``--nproc`` and ``--backend`` for search, train and eval: a command decorated with ``data_parallel``
runs inside the torch.distributed process group when torchrun started it, and ``--nproc N`` starts
torchrun (its Python API, ``--standalone``) on this machine with the same command line minus ``--nproc``.

Rank 0 speaks for the run: the other ranks print no bars and no results (their stdout goes to
/dev/null, their error lines are left to rank 0; tracebacks of bugs still reach stderr).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Mapping

import typer

from rspnet_zoo.cli import options
from rspnet_zoo.perf.threads import share_among_workers

NPROC = inspect.Parameter(
    "nproc",
    inspect.Parameter.KEYWORD_ONLY,
    default=options.number(
        None,
        "--nproc",
        kind=options.PROCESSES,
        help="Start this many processes on this machine (torchrun), data-parallel.",
    ),
    annotation=int | None,
)
CONTEXT = inspect.Parameter("parallel_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
BACKEND = inspect.Parameter(
    "backend",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(
        None, "--backend", help="torch.distributed backend (gloo, nccl).", show_default="nccl on CUDA, else gloo"
    ),
    annotation=str | None,
)


def is_worker() -> bool:
    """A rank other than 0 of a torchrun-started run."""
    return os.environ.get("RANK", "0") != "0"


def data_parallel(command: Callable | None = None, *, preflight: Callable[..., object] | None = None) -> Callable:
    """Add ``--nproc`` and ``--backend`` to a typer command (see the module docstring). ``preflight(nproc,
    **options)``, if given, runs in the launcher before ``--nproc`` starts any process: it raises to refuse,
    and may say what the run will do (``said_by_launcher`` tells the started processes)."""
    if command is None:
        return functools.partial(data_parallel, preflight=preflight)
    signature = inspect.signature(command)

    @functools.wraps(command)
    def wrapper(*, nproc: int | None, backend: str | None, parallel_ctx: typer.Context, **kwargs):
        if nproc is not None:
            if "RANK" in os.environ:
                raise typer.BadParameter("--nproc starts torchrun itself; under torchrun leave it out")
            if preflight is not None:
                preflight(nproc, **kwargs)
            obj = parallel_ctx.find_root().obj
            sys.exit(launch(nproc, without_nproc(obj["argv"]), obj.get("threads_env", {})))
        if backend is None and not ("RANK" in os.environ and "WORLD_SIZE" in os.environ):
            return command(**kwargs)  # one process, no group to join: the command loads torch when it needs it
        from rspnet_zoo.training.distributed import process_group

        if is_worker():
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the life of this process)
            kwargs["as_json"] = True  # no progress bars on the other ranks
        with process_group(backend):
            return command(**kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), NPROC, BACKEND, CONTEXT])
    return wrapper


def said_by_launcher() -> bool:
    """A process ``--nproc`` started: its launcher ran the command's preflight, which may have spoken for the
    run already (a search's plan)."""
    if "WORLD_SIZE" not in os.environ:
        return False
    from rspnet_zoo.training.distributed import LAUNCHER_ENV  # a worker has loaded torch already

    return bool(os.environ.get(LAUNCHER_ENV))


def without_nproc(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch(nproc: int, args: list[str], threads_env: Mapping[str, str] | None = None) -> int:
    """``torchrun --standalone --nproc_per_node nproc -m rspnet_zoo ARGS``; returns the exit code. The workers
    share the free cores (``rspnet_zoo.perf.threads``; ``threads_env``: what this process chose there).

    A worker that failed by itself (exit code > 0) has said why on rank 0: its code is returned. A worker
    killed by a signal is named in one line; torchrun has then stopped the others (SIGTERM).
    """
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from rspnet_zoo.training.distributed import LAUNCHER_ENV

    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)  # its banner and failure report
    os.environ[LAUNCHER_ENV] = "1"  # the workers leave the failure line to this process
    share_among_workers(nproc, threads_env or {})
    config = parse_args(["--standalone", f"--nproc_per_node={nproc}", "--module", "rspnet_zoo", *args])
    try:
        run(config)
    except ChildFailedError as e:
        failures = sorted(e.failures.items())
        killed = [(r, f) for r, f in failures if f.exitcode < 0 and f.signal_name() != "SIGTERM"]
        if killed:
            rank, failure = killed[0]
            print(
                f"rspnet-zoo: error: rank {rank} of {nproc} (pid {failure.pid}) was killed by {failure.signal_name()}; "
                f"the run stopped: rerun with --resume to continue from the last checkpoint",
                file=sys.stderr,
            )
            return 1
        return max((f.exitcode for _, f in failures if f.exitcode > 0), default=1)
    return 0
