"""One validator for every user-given name (``rspnet_zoo.names``): whatever a name holds, it is refused in one
line or it names something inside the folder it is joined to; the spec's own identifier rule is the same
grammar. Regression cases of issue 30: ``convert --name ../../thesis`` and ``--tag 'x/../../../results'``."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from rspnet_zoo.errors import ZooError
from rspnet_zoo.names import FOLDER, NAME, TAG, check_name
from rspnet_zoo.spec.models import Identifier

HOSTILE = ["", ".", "..", "../x", "x/..", "a/b", "a\\b", "a\nb", "a\x00b", "\x1b[31m", "[red]x[/]", "-x", "A"]
HOSTILE += ["a" * 65, "x/../../../results", "../../thesis", "a..b", "a.", ".a", "a b", "é", "a\u202eb", "a.b.c"]
NAMES = st.sampled_from(HOSTILE) | st.text(string.ascii_lowercase + string.digits + "_./\\\n -A", max_size=70)
QUICK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@QUICK
@given(value=NAMES, grammar=st.sampled_from([NAME, TAG, FOLDER]))
def test_a_name_is_refused_in_one_line_or_stays_inside_its_folder(tmp_path, value, grammar):
    try:
        name = check_name(value, "--name", grammar)
    except ZooError as e:
        assert "\n" not in str(e) and str(e).startswith("--name: ")
        return
    assert name == value and 1 <= len(name) <= 64 + (65 if grammar is FOLDER else 0)
    assert not {"/", "\\", "\0"} & set(name) and ".." not in name and name.isprintable()
    assert os.path.dirname(os.path.normpath(tmp_path / name)) == os.path.normpath(tmp_path)


@QUICK
@given(value=NAMES | st.text(max_size=70))
def test_the_name_grammar_is_the_spec_identifier_rule(value):
    try:
        TypeAdapter(Identifier).validate_python(value)
        spec_accepts = True
    except ValidationError:
        spec_accepts = False
    try:
        check_name(value, "name")
        accepted = True
    except ZooError:
        accepted = False
    assert accepted == spec_accepts, value


def test_folder_names_are_a_name_and_an_optional_tag():
    assert check_name("rspnet_small.synth", "--name", FOLDER) == "rspnet_small.synth"
    assert check_name("0x", "--tag", TAG) == "0x"
    for bad in ("rspnet_small.", ".synth", "a.b.c", "0x.y", "rspnet_small.Synth"):
        with pytest.raises(ZooError):
            check_name(bad, "--name", FOLDER)


def test_convert_name_with_separators_deletes_nothing(run_cli, tmp_path):
    """issue 30: `convert nas-segm ck.pth --spec nas_segm_arch0 --out w/out --name ../../thesis` deleted
    the folder thesis."""
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("precious")
    checkpoint = tmp_path / "ck.pth"
    checkpoint.write_bytes(b"not even a checkpoint")
    out = tmp_path / "w" / "out"
    out.mkdir(parents=True)
    for flag, value in (("--name", "../../thesis"), ("--tag", "x/../../../thesis")):
        code, stdout, err = run_cli(
            "convert", "nas-segm", str(checkpoint), "--spec", "nas_segm_arch0", "--out", str(out), flag, value
        )
        assert code == 2 and stdout == "" and err.count("\n") == 1, err
        assert f"{flag}: " in err and "is not a" in err
    assert (thesis / "chapter1.tex").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pth", "thesis", "w"] and list(out.iterdir()) == []


def test_train_tag_with_separators_is_refused_before_any_file_operation(run_cli, tmp_path, zoo_home):
    results = tmp_path / "results"
    results.mkdir()
    tiny = Path(__file__).parent / "data" / "tiny_net.json"
    code, stdout, err = run_cli("train", str(tiny), "--tag", "x/../../../results", "--iterations", "1")
    assert code == 2 and err.strip().endswith("is not a tag (lower-case letters, digits and _, at most 64)")
    assert list(results.iterdir()) == [] and not zoo_home.exists()
