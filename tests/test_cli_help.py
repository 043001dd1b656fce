"""Every command's --help: each default shows, flags show no value type, nothing is cut off at 80 columns."""

import pytest

from rspnet_zoo.cli.app import command, main


def _leaves(cmd, path=()):
    subcommands = getattr(cmd, "commands", None)
    if not subcommands:
        yield path, cmd
        return
    for name, sub in sorted(subcommands.items()):
        yield from _leaves(sub, (*path, name))


LEAVES = dict(_leaves(command()))


def _has_default(param) -> bool:
    """Whether help should state a default: a documented one, or a value other than 'off' or 'nothing'."""
    if isinstance(param.show_default, str):
        return True
    if param.show_default is False or param.default is None or param.default in ([], ()):
        return False
    return not (param.is_flag and not param.secondary_opts and param.default is False)


def _help(capsys, monkeypatch, path, columns) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("path", list(LEAVES), ids=" ".join)
def test_every_default_shows(path, capsys, monkeypatch):
    options = [p for p in LEAVES[path].params if p.param_type_name == "option"]
    for p in options:  # rich markup swallows "[default: ...]" written into help text; show_default= is the way
        assert "[default" not in (p.help or "") and "(default" not in (p.help or ""), p.opts
    text = _help(capsys, monkeypatch, path, columns=200)
    assert text.count("[default: ") == sum(_has_default(p) for p in options)
    assert "<bool>" not in text


@pytest.mark.parametrize("path", [(), *LEAVES], ids=lambda p: " ".join(p) or "rspnet-zoo")
def test_help_fits_80_columns_uncut(path, capsys, monkeypatch):
    text = _help(capsys, monkeypatch, path, columns=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
