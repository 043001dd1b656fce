"""User-provided text is printed as text (``rspnet_zoo.cli.output``): the consoles interpret no markup,
``shown`` escapes control characters, and an error is one line whatever it quotes. Regression cases of
issue 30: rich markup in a spec description, a file name or class names crashed show, validate and
predict; a newline in an op name forged a log line (``rspnet-zoo: ok, validated``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspnet_zoo.cli.output import console, error_line, shown

TINY = Path(__file__).parent / "data" / "tiny_net.json"
MARKUP = ["[/oops]", "[bold red]x[/]", "[link=file:///etc]y[/link]", ":smile:", "[/]", "\\[x]", "[", "]"]
CONTROL = ["\n", "\r", "\x1b[31m", "\x1b]8;;x\x07", "\t", "\x00", "\u202e", "\u2028", "\x7f", "\x85"]
TEXTS = st.lists(st.sampled_from(MARKUP + CONTROL) | st.text(max_size=8), max_size=6).map("".join)
QUICK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FORGED = "rspnet-zoo: ok, validated"


@QUICK
@given(text=TEXTS)
def test_shown_text_prints_as_one_line_exactly_as_escaped(capsys, text):
    line = shown(text)
    assert line.isprintable()
    console.print(line, soft_wrap=True)
    assert capsys.readouterr().out == line + "\n"


@QUICK
@given(text=TEXTS)
def test_an_error_is_one_line_whatever_it_quotes(capsys, text):
    error_line(f"{text}: something went wrong")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n") and err[:-1].isprintable()


def _spec(tmp_path: Path, name: str, **changes) -> Path:
    doc = json.loads(TINY.read_text())
    for key, value in changes.items():
        doc[key] = value
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_markup_in_a_description_or_a_file_name_prints_as_written(run_cli, tmp_path):
    description = "[/oops] [bold red]hi[/] " + FORGED
    spec = _spec(tmp_path, "dir[/x].json", description=description)  # the file name holds '[/x]'
    code, out, err = run_cli("show", str(spec))
    assert code == 0 and err == ""
    assert description in out.splitlines()
    code, out, err = run_cli("validate", str(spec))
    assert code == 0 and out.startswith(f"ok  {spec}  tiny_net  ")
    other = _spec(tmp_path, "other.json", description="a\nb")
    code, out, err = run_cli("diff", str(spec), str(other))
    assert code == 1 and "description: " in out and description in out and "a\\nb" in out


def test_a_newline_in_an_op_name_cannot_forge_a_line(run_cli, tmp_path):
    doc = json.loads(TINY.read_text())
    doc["cells"]["c"]["steps"][0]["edges"][0]["op"] = f"x\n{FORGED}"
    spec = tmp_path / "forged.json"
    spec.write_text(json.dumps(doc))
    for command in ("validate", "show"):
        code, out, err = run_cli(command, str(spec))
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert "x\\nrspnet-zoo: ok, validated" in err
        assert not any(line.startswith(FORGED) for line in err.splitlines())


def test_markup_and_control_characters_in_class_names_print_as_text(run_cli, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("RSPNET_ZOO_ALLOW_UNTRAINED", "1")
    names = ["[/oops]", "a\nb", "[bold]c", "d", "e", "f", "g", "h", "\x1b[31mi"]
    doc = json.loads(TINY.read_text())
    doc["defaults"]["class_names"] = names
    spec = tmp_path / "classes.json"
    spec.write_text(json.dumps(doc))
    code, out, err = run_cli("build", str(spec), "--out", str(tmp_path / "built"))
    assert code == 0, err
    image = tmp_path / "[red]in.png"
    Image.new("RGB", (24, 24), (200, 30, 30)).save(image)
    code, out, err = run_cli("predict", str(tmp_path / "built" / "tiny_net"), str(image), "--out", str(tmp_path / "o"))
    assert code == 0 and err == "", err
    lines = out.splitlines()
    assert lines[0].startswith(f"{image} -> ") and len(lines) == 2
    assert all(line.isprintable() for line in lines)


@pytest.mark.parametrize("command", ["show", "validate", "build"])
def test_a_markup_model_reference_is_one_error_line(run_cli, command):
    code, out, err = run_cli(command, "[/nope]\n[bold]")
    assert code == 2 and out == "" and err.count("\n") == 1 and "\\n" in err
