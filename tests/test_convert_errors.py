"""A checkpoint that does not fit is refused with one line naming what and where: exit 2, no traceback,
nothing written."""

from __future__ import annotations

import os

import pytest
import torch
from reference_checkpoints import random_state, reference_layout, save_published

NAME = "nas_segm_arch0"  # the smallest published network


@pytest.fixture
def state():
    return random_state(reference_layout(NAME))


def convert(run_cli, path, out, *extra):
    return run_cli("convert", "nas-segm", str(path), "--spec", NAME, "--out", str(out), *extra)


def refused(run_cli, tmp_path, obj, *needles):
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    out = tmp_path / "out"
    code, stdout, err = convert(run_cli, path, out)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("rspnet-zoo: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
    return err


def test_extra_reference_key_is_unmatched(run_cli, tmp_path, state):
    state["decoder.extra_head.weight"] = torch.zeros(3, 4)
    refused(run_cli, tmp_path, state, "1 reference tensors match none of ours", "decoder.extra_head.weight [3,4]")


def test_missing_reference_key(run_cli, tmp_path, state):
    del state["decoder._ops.0.1.op.sep_1.1.weight"]
    err = refused(run_cli, tmp_path, state, "1 of ours have no reference tensor")
    assert "nodes.7.body.ops.1.1.1.weight" not in err and "decoder._ops.0.1.op.sep_1.1.weight [64,64,1,1]" in err


def test_mis_shaped_key(run_cli, tmp_path, state):
    state["decoder.conv_clf.weight"] = torch.zeros(21, 64, 3, 3)  # another class count
    refused(run_cli, tmp_path, state, "1 mis-shaped", "decoder.conv_clf.weight [21,64,3,3] (ours [19,64,3,3])")


def test_renamed_keys_are_listed_on_both_sides(run_cli, tmp_path, state):
    state["decoder.pre_clf.9.weight"] = state.pop("decoder.pre_clf.1.weight")
    refused(
        run_cli, tmp_path, state, "match none of ours: decoder.pre_clf.9.weight [64]", "decoder.pre_clf.1.weight [64]"
    )


def test_wrong_family_for_the_spec(run_cli, tmp_path, state):
    path = tmp_path / "ckpt.pth"
    torch.save(state, path)
    code, _, err = run_cli("convert", "darts", str(path), "--spec", NAME, "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and "not a DARTS network" in err


def test_no_state_dict_names_the_keys_found(run_cli, tmp_path, state):
    refused(run_cli, tmp_path, {"epoch": 3, "weights_list": [1, 2]}, "no state dict", "['epoch', 'weights_list']")


class Payload:
    """Unpickling it runs a shell command that leaves a file behind."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused(run_cli, tmp_path, state):
    marker = tmp_path / "ran"
    refused(
        run_cli,
        tmp_path,
        {"state_dict": state, "hook": Payload(marker)},
        "refused",
        "weights_only=True",
        "posix.system",
    )
    assert not marker.exists()


def test_published_wrappers_are_unwrapped(tmp_path):
    """Bare, under 'state_dict' (with an optimizer beside it), or with DataParallel's 'module.' prefix."""
    from rspnet_zoo.interop.convert import read_checkpoint

    layout = reference_layout("pc_darts_imagenet")  # published under 'state_dict', keys prefixed 'module.'
    state = {r.key: torch.zeros(1) for r in layout.rows[:5]}
    path = save_published(layout, state, tmp_path)
    assert list(torch.load(path, weights_only=True)["state_dict"])[0].startswith("module.")
    assert list(read_checkpoint(path)) == list(state)
    torch.save({"model": state, "epoch": 1}, tmp_path / "m.pth")
    assert list(read_checkpoint(tmp_path / "m.pth")) == list(state)


def test_cli_usage_errors(run_cli, tmp_path, state):
    path = tmp_path / "ckpt.pth"
    torch.save(state, path)
    for args, needle in [
        (("convert", "keras", str(path), "--spec", NAME), "unknown family 'keras'"),
        (("convert", "nas-segm", str(path)), "needs --spec"),
        (("convert", "nas-segm", str(tmp_path / "none.pth"), "--spec", NAME), "no such checkpoint file"),
        (("convert", "--to", "nas-segm", "a", "b"), "takes one MODEL"),
        (("convert", "--to", "nas-segm", str(tmp_path)), "not a built folder"),
    ]:
        code, _, err = run_cli(*args)
        assert code == 2 and err.count("\n") == 1 and needle in err, (args, err)
