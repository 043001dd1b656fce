"""A built folder's config.json is a typed, closed model (issue 30, item 3): unknown keys refused, values bounded
as the spec's, and no flag that changes trust read from a file; every refusal is one line naming the file
and where in it."""

from __future__ import annotations

import copy
import json

import pytest
import timm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspnet_zoo.errors import ZooError
from rspnet_zoo.zoo.catalog import SHIPPED
from rspnet_zoo.zoo.config import CONFIG_FILE, read_folder_config
from rspnet_zoo.zoo.folder import build_folder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder, _ = build_folder(SHIPPED["rspnet_small"], tmp_path_factory.mktemp("built"), seed=0)
    return folder


@pytest.fixture(scope="module")
def document(built):
    return json.loads((built / CONFIG_FILE).read_text())


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


# (what the mutation does, whether the result is still a folder the zoo reads)
def mutations():
    finite = st.floats(-10, 10, allow_nan=False)
    positive = st.floats(1e-3, 10)
    return st.one_of(
        # valid: the values a build writes, other ones in bounds
        st.builds(lambda v: (("pretrained_cfg", "std", 1), v, True), positive),
        st.builds(lambda v: (("pretrained_cfg", "mean", 0), v, True), finite),
        st.builds(lambda v: (("pretrained_cfg", "crop_pct"), v, True), st.floats(0.05, 2.0)),
        st.builds(lambda v: (("pretrained_cfg", "interpolation"), v, True), st.sampled_from(["bicubic", "nearest"])),
        st.builds(lambda v: (("model_args", "aux_head"), v, True), st.just(False)),
        # invalid: out of bounds, wrong type, wrong length, unknown, a trust flag
        st.builds(lambda v: (("pretrained_cfg", "std", 2), v, False), st.sampled_from([0, 0.0, -1.0, "0.2", None])),
        st.builds(lambda v: (("pretrained_cfg", "std"), v, False), st.sampled_from([[0.2], [0.2] * 4, [], 0.2])),
        st.builds(lambda v: (("pretrained_cfg", "mean"), v, False), st.sampled_from([[0.5, 0.5], "0.5"])),
        st.builds(lambda v: (("num_classes",), v, False), st.sampled_from([0, -1, 100_001, "19", True, 19.0])),
        st.builds(lambda v: (("model_args", "num_classes"), v, False), st.sampled_from([0, 18, None])),
        st.builds(lambda v: (("pretrained_cfg", "label_names"), v, False), st.sampled_from([["a"], "road", [1] * 19])),
        st.builds(
            lambda v: (("pretrained_cfg", "input_size"), v, False), st.sampled_from([[0, 8, 8], [3, 8], [3.0, 8, 8]])
        ),
        st.builds(lambda v: (("model_args", "allow_untrained"), v, False), st.just(True)),
        st.builds(lambda v: (("model_args", "drop_rate"), v, False), st.just(0.5)),
        st.builds(lambda v: (("pretrained_cfg", "file"), v, False), st.just("/tmp/other.safetensors")),
        st.builds(lambda v: (("extra",), v, False), st.just(1)),
        st.builds(lambda v: (("model_args",), v, False), st.sampled_from([nested(3), [], None])),
        st.builds(lambda v: (("model_args", "genotype", "defaults", "num_classes"), v, False), st.just(0)),
        st.builds(lambda v: (("pretrained_cfg", "interpolation"), v, False), st.just("cubic")),
        st.builds(lambda v: (("architecture",), v, False), st.sampled_from(["Rspnet", "", 3])),
    )


def mutated(document: dict, path: tuple, value) -> dict | None:
    """``document`` with ``value`` at ``path``; None where an earlier change removed the place."""
    doc = copy.deepcopy(document)
    target = doc
    for key in path[:-1]:
        target = target.get(key) if isinstance(target, dict) else None
    last = path[-1]
    if isinstance(target, dict) or (isinstance(target, list) and isinstance(last, int) and last < len(target)):
        target[last] = value
        return doc
    return None


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(mutations(), min_size=1, max_size=3))
def test_config_documents_are_read_iff_valid(changes, document, tmp_path_factory):
    doc, verdicts = document, {}  # path -> whether the value last written there is valid
    for path, value, ok in changes:
        changed = mutated(doc, path, value)
        if changed is not None:
            doc = changed
            verdicts = {p: v for p, v in verdicts.items() if p[: len(path)] != path}  # overwritten
            verdicts[path] = ok
    valid = all(verdicts.values())
    folder = tmp_path_factory.mktemp("f")
    (folder / CONFIG_FILE).write_text(json.dumps(doc))
    if valid:
        read_folder_config(folder / CONFIG_FILE).genotype("x")
        return
    with pytest.raises(ZooError) as refused:
        config = read_folder_config(folder / CONFIG_FILE)
        config.genotype(str(folder / CONFIG_FILE))
    message = str(refused.value)
    assert "\n" not in message and message.startswith(str(folder / CONFIG_FILE) + ": /"), message


DEEP = "<deep>"  # stands for nesting deeper than json.dumps writes


def rewrite(folder, change) -> None:
    doc = json.loads((folder / CONFIG_FILE).read_text())
    change(doc)
    text = json.dumps(doc).replace(json.dumps(DEEP), '{"a":' * 100_000 + "1" + "}" * 100_000)
    (folder / CONFIG_FILE).write_text(text)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d["model_args"].update(allow_untrained=True), "/model_args/allow_untrained: Extra inputs"),
        (lambda d: d["pretrained_cfg"].update(std=[0.2, 0.0, 0.2]), "/pretrained_cfg/std/1: Input should be greater"),
        (lambda d: d["pretrained_cfg"].update(std=[0.2, 0.2]), "/pretrained_cfg: 'std' needs 3 values"),
        (lambda d: d["model_args"].update(drop_rate=0.5), "/model_args/drop_rate: Extra inputs are not permitted"),
        (lambda d: d.update(num_classes=0), "/num_classes: Input should be greater than or equal to 1"),
        (lambda d: d["model_args"].update(genotype=DEEP), "invalid JSON: nested too deeply"),
    ],
)
def test_listed_config_faults_are_one_line_for_the_cli_and_timm(change, needle, built, tmp_path, run_cli):
    """Regressions: allow_untrained switched on from the file, std zero (every pixel one class), a model arg
    the builder does not take (a traceback), deep nesting, a wrong-length std, num_classes 0."""
    folder = tmp_path / "f"
    folder.mkdir()
    for f in built.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    rewrite(folder, change)
    image = tmp_path / "scene.png"
    assert run_cli("data", "sample", str(image), "--size", "32x32")[0] == 0
    code, out, err = run_cli("predict", str(folder), str(image), "--out", str(tmp_path / "pred"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{folder / CONFIG_FILE}: " in err and needle in err
    assert not (tmp_path / "pred").exists()
    if "nested" not in needle:  # timm reads the file itself with json.load first; the rest reach our entry point
        with pytest.raises(ZooError, match=needle.replace("(", r"\(")):
            timm.create_model(f"local-dir:{folder}", pretrained=True)


def test_allow_untrained_from_the_file_never_loads_initialised_weights(built, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for f in built.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    rewrite(folder, lambda d: d["model_args"].update(allow_untrained=True))
    for pretrained in (True, False):
        with pytest.raises(ZooError, match="allow_untrained: Extra inputs are not permitted"):
            timm.create_model(f"local-dir:{folder}", pretrained=pretrained)
    # the caller may still ask for them, in code: a flag that changes trust comes from the caller only
    model = timm.create_model(f"local-dir:{built}", pretrained=True, allow_untrained=True)
    assert model.num_classes == 19


def test_what_build_writes_reads_back(built):
    config = read_folder_config(built / CONFIG_FILE)
    assert config.to_json() == json.loads((built / CONFIG_FILE).read_text())
    assert config.genotype("x") == SHIPPED["rspnet_small"]


def test_a_build_with_other_classes_writes_no_names_for_them(tmp_path):
    folder, _ = build_folder(SHIPPED["rspnet_small"], tmp_path, num_classes=9)
    cfg = json.loads((folder / CONFIG_FILE).read_text())["pretrained_cfg"]
    assert cfg["num_classes"] == 9 and "label_names" not in cfg
    read_folder_config(folder / CONFIG_FILE)
