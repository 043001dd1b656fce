"""The ``rspnet-zoo`` app: the typer root, its command table, and ``main`` (errors to one line, exit code 2).

Command modules define plain functions and import downward (never this module); the table below adds them.
They import torch-side modules inside their functions, so that ``--help``, ``--version`` and
the command tree load without torch or timm (``import rspnet_zoo`` defers those too; see its docstring).

Known errors become one line on stderr and exit code 2; ``--json`` on a command prints its result
as JSON on stdout; rich tables are for people.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer
from safetensors import SafetensorError
from typer.core import TyperCommand, TyperGroup

from rspnet_zoo import __version__
from rspnet_zoo.cli import (
    bench_commands,
    convert_commands,
    hub_commands,
    import_commands,
    latency_commands,
    search_commands,
    template_commands,
    train_commands,
    zoo_commands,
)
from rspnet_zoo.cli.output import error_line
from rspnet_zoo.cli.parallel import is_worker
from rspnet_zoo.errors import ZooError
from rspnet_zoo.perf.threads import prefer_shared_machine

app = typer.Typer(
    name="rspnet-zoo",
    help="Genotype compiler and timm model zoo for RSPNet and NAS-found segmentation networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"rspnet-zoo {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Genotype compiler and timm model zoo for RSPNet and NAS-found segmentation networks."""


# Every command, in the order --help lists them: one line each is how a command joins the CLI.
app.command()(zoo_commands.validate)
app.command("list")(zoo_commands.list_models)
app.command()(zoo_commands.show)
app.command()(zoo_commands.build)
app.add_typer(import_commands.import_app, name="import")
app.command()(import_commands.diff)
app.command()(train_commands.train)
app.command("eval")(train_commands.evaluate_command)
app.command()(train_commands.predict)
app.add_typer(train_commands.data_app, name="data")
search_app = typer.Typer(cls=search_commands.SearchGroup, help=search_commands.SEARCH_HELP, no_args_is_help=False)
search_app.command("rspnet")(search_commands.rspnet)
search_app.command("template")(template_commands.template)
app.add_typer(search_app, name="search")
app.add_typer(latency_commands.latency_app, name="latency")
app.command()(bench_commands.bench)
app.command()(bench_commands.export)
app.command()(convert_commands.convert)
app.command()(hub_commands.push)


def _short_type(param) -> None:
    """Flags show no value type (typer writes ``<bool>``); ranges show ``<int> [x>=1]``, not
    ``<int range> [x>=1]``, which leaves the help column room at 80 columns."""
    if getattr(param, "is_flag", False):
        param.metavar = ""
    elif getattr(param, "metavar", None) is None and getattr(param, "type_descriptor", None) is not None:
        if param.type_descriptor.is_ranged:
            param.metavar = f"<{param.type_descriptor.ranged_type_name}>"


def command() -> TyperCommand | TyperGroup:
    """The click command tree of ``app``, every option's type shown short (``_short_type``)."""
    root = typer.main.get_command(app)
    todo = [root]
    while todo:
        cmd = todo.pop()
        todo.extend(getattr(cmd, "commands", {}).values())
        for param in cmd.params:
            _short_type(param)
        get_help_option = cmd.get_help_option
        cmd.get_help_option = lambda ctx, get=get_help_option: _shortened(get(ctx))
    return root


def _shortened(option):
    if option is not None:
        _short_type(option)
    return option


def main(argv: Sequence[str] | None = None) -> None:
    args = list(argv) if argv is not None else sys.argv[1:]
    threads_env = prefer_shared_machine()  # before any command imports torch
    try:
        rc = command().main(
            args=args, prog_name="rspnet-zoo", standalone_mode=False, obj=dict(argv=args, threads_env=threads_env)
        )
        sys.exit(rc if isinstance(rc, int) else 0)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        print("rspnet-zoo: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as e:  # usage errors: unknown flag, bad value, missing argument
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        if message:
            error_line(message)
        sys.exit(getattr(e, "exit_code", 2))
    except ZooError as e:
        if not is_worker():  # under torchrun every rank refuses alike; rank 0 says it
            error_line(e)
        sys.exit(2)
    except OSError as e:  # what the up-front checks cannot foresee: a disk that fills, a file removed meanwhile
        where = f"{e.filename}: " if e.filename else ""
        error_line(f"{where}{e.strerror or e}")
        sys.exit(2)
    except SafetensorError as e:  # safetensors' own write failures (a full disk while saving weights)
        error_line(f"cannot write weights: {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        print("rspnet-zoo: interrupted", file=sys.stderr)
        sys.exit(130)
