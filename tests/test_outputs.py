"""One check for every output path (``fsutil.writable_output``) and one rule for built folders
(``zoo.folder.check_build_target``): an output is refused in one line, before any work, or it is a regular
file (or a folder) the user may replace, none of the command's inputs, inside the folder it was named in.
Regression cases of issue 30: predict overwriting its second input, a device node as ``--out``, a spec
named like a registered network replacing the zoo's build, and a user's folder swapped out by a build."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import writable_output

TINY = Path(__file__).parent / "data" / "tiny_net.json"
QUICK = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def make_tree(root: Path) -> list[str]:
    """Every kind of thing an output path may meet; returns the names made."""
    (root / "dir").mkdir()
    (root / "dir" / "inner.txt").write_text("inner")
    (root / "file.txt").write_text("file")
    (root / "input.png").write_bytes(b"input")
    os.symlink("file.txt", root / "link_file")
    os.symlink("dir", root / "link_dir")
    os.symlink("missing", root / "dangling")
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink("/dev/null", root / "link_null")
    os.symlink("..", root / "link_up")
    os.mkfifo(root / "fifo")
    return sorted(os.listdir(root))


def kind(path: Path) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "missing"
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "special"


PARTS = st.sampled_from(["dir", "file.txt", "input.png", "link_file", "link_dir", "dangling", "loop_a"])
PARTS |= st.sampled_from(["link_null", "link_up", "fifo", "new.png", "..", ".", "inner.txt", "/dev/null"])


@QUICK
@given(parts=st.lists(PARTS, min_size=1, max_size=3), folder=st.booleans(), replace=st.booleans())
def test_an_output_is_refused_or_writable_as_named(tmp_path_factory, parts, folder, replace):
    root = tmp_path_factory.mktemp("tree")
    make_tree(root)
    dest = root.joinpath(*parts)
    try:
        checked = writable_output(dest, folder=folder, replace=replace, avoid=[root / "input.png"], within=root)
    except ZooError as e:
        assert "\n" not in str(e)
        return
    assert checked == dest
    real = Path(os.path.realpath(dest))
    assert real.is_relative_to(os.path.realpath(root)), (dest, real)
    assert real != Path(os.path.realpath(root / "input.png"))
    found = kind(dest)
    if folder:
        assert found in ("dir", "missing")
    else:
        assert found == "missing" or (found == "file" and replace), (dest, found)


def test_a_device_node_or_fifo_is_never_an_output(run_cli, tmp_path):
    """issue 30: `--out ./nullcopy` (a character device) was replaced by a regular file, and as root
    `--out /dev/null` would have replaced /dev/null."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    targets = ["/dev/null", str(fifo)]
    if os.geteuid() == 0:  # a character device of our own, as a user with mknod rights could have
        nullcopy = tmp_path / "nullcopy"
        os.mknod(nullcopy, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets.append(str(nullcopy))
    for target in targets:
        code, out, err = run_cli("data", "sample", target, "--size", "8x8")
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert "is a character device" in err or "is a FIFO" in err
        assert not stat.S_ISREG(os.stat(target).st_mode)


def test_predict_never_writes_over_its_own_inputs(run_cli, tmp_path, monkeypatch):
    """issue 30: `predict street.png street_overlay.png` into their own folder overwrote the second image
    with the first one's overlay, then predicted on the overwrite."""
    from rspnet_zoo.training.tasks import BuildRequest, run_build

    monkeypatch.setenv("RSPNET_ZOO_ALLOW_UNTRAINED", "1")
    model = run_build(BuildRequest(str(TINY), out=tmp_path / "built"))["path"]
    rng = np.random.default_rng(0)
    images = [tmp_path / "street.png", tmp_path / "street_overlay.png"]
    for path in images:
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
    before = [p.read_bytes() for p in images]
    code, out, err = run_cli("predict", model, *map(str, images), "--out", str(tmp_path))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "street_overlay.png: is also" in err
    assert [p.read_bytes() for p in images] == before
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["street.png", "street_overlay.png"]
    code, out, err = run_cli("predict", model, *map(str, images), "--out", str(tmp_path / "masks"))
    assert code == 0, err
    assert [p.read_bytes() for p in images] == before


def test_a_spec_named_like_a_registered_network_does_not_replace_its_build(run_cli, tmp_path, zoo_home):
    """issue 30: a spec whose "name" is rspnet_small replaced the zoo's rspnet_small build without --force."""
    fake = tmp_path / "fake.json"
    fake.write_text(TINY.read_text().replace('"tiny_net"', '"rspnet_small"'))
    code, _, err = run_cli("build", "rspnet_small")
    assert code == 0, err
    weights = zoo_home / "rspnet_small" / "model.safetensors"
    before = weights.read_bytes()
    code, out, err = run_cli("build", str(fake))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "spec name 'rspnet_small' is a registered network" in err and "--force" in err
    assert weights.read_bytes() == before
    code, _, err = run_cli("build", "rspnet_small")  # a rebuild of the same spec replaces its folder
    assert code == 0, err


def test_a_build_replaces_only_a_build_of_the_same_spec(run_cli, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(TINY.read_text().replace('"channels": 16,\n    "inputs"', '"channels": 8,\n    "inputs"'))
    out = tmp_path / "out"
    assert run_cli("build", str(TINY), "--out", str(out))[0] == 0
    assert run_cli("build", str(TINY), "--out", str(out))[0] == 0
    code, _, err = run_cli("build", str(other), "--out", str(out))
    assert code == 2 and "holds a build of another spec" in err and "pass --force" in err
    code, _, err = run_cli("build", str(other), "--out", str(out), "--force")
    assert code == 0, err
    user = out / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    named_mine = tmp_path / "mine.json"
    named_mine.write_text(TINY.read_text().replace('"tiny_net"', '"mine"'))
    for extra in ((), ("--force",)):
        code, _, err = run_cli("build", str(named_mine), "--out", str(out), *extra)
        assert code == 2 and "is not a built folder; it is not replaced" in err
    assert (user / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("command", ["export", "convert"])
def test_an_unnamed_default_output_is_replaced_only_with_force(run_cli, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RSPNET_ZOO_ALLOW_UNTRAINED", "1")
    if command == "export":
        args, default = ["export", str(TINY), "--format", "torchscript"], tmp_path / "tiny_net.pt"
    else:
        assert run_cli("build", "nas_segm_arch0")[0] == 0
        args, default = ["convert", "--to", "nas-segm", "nas_segm_arch0"], tmp_path / "nas_segm_arch0.nas-segm.pth"
    default.write_bytes(b"someone's file")
    code, _, err = run_cli(*args)
    assert code == 2 and err.count("\n") == 1 and "exists; pass --force" in err
    assert default.read_bytes() == b"someone's file"
    code, _, err = run_cli(*args, "--force")
    assert code == 0, err
    assert default.read_bytes() != b"someone's file"
