"""Property tests: whatever a spec, weight file, checkpoint or config.json holds, loading it either works
or raises one of the project's errors (a ZooError), and a refused file never gets as far as allocating a network.

Mutations start from valid files: JSON structure (replace, delete or insert a value anywhere) and raw
bytes (flip, overwrite, insert, delete, truncate). The default suite runs the ``quick`` profile; the
``thorough`` one (``pytest -m slow``) runs 16 times as many examples.
"""

from __future__ import annotations

import copy
import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspnet_zoo.errors import ZooError
from rspnet_zoo.nn.model import GenotypeNet
from rspnet_zoo.resources import shipped_specs

settings.register_profile(
    "quick",
    max_examples=25,
    deadline=None,  # no wall-clock limit: this machine is shared; the allocation guard below is the check
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("thorough", settings.get_profile("quick"), max_examples=400)
PROFILES = [pytest.param("quick", id="quick"), pytest.param("thorough", id="thorough", marks=pytest.mark.slow)]

TINY = Path(__file__).parent / "data" / "tiny_net.json"
BASE_SPECS = [TINY.read_text(), next(p for p in shipped_specs() if p.stem == "rspnet_small").read_text()]

INTERESTING = st.sampled_from(
    ["sep_conv_3x3", "skip_connect", "none", "input", "stem0", "a", "", 0, 1, -1, 2, 4096, 4097, 10**70, 1e308]
    + [0.5, -0.0, True, None, [], {}, [0], {"node": "input"}]
)
JSON_VALUES = st.recursive(
    INTERESTING | st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if a GenotypeNet is built with real memory (a meta-device skeleton allocates none)."""
    built = []
    init = GenotypeNet.__init__

    def guarded(self, *args, **kwargs):
        if torch.empty(0).device.type != "meta":
            built.append(type(self).__name__)
        init(self, *args, **kwargs)

    monkeypatch.setattr(GenotypeNet, "__init__", guarded)
    return built


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*path, i))
    return out


@st.composite
def mutated_json(draw, base: Any) -> Any:
    """``base`` with one to three values replaced (by a new value or a copy of another), deleted, or given
    a new sibling."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            doc = draw(JSON_VALUES)
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["replace", "copy", "delete", "insert"]))
        if op == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif op == "copy":  # a value from elsewhere in the document: plausible, so it reaches deeper checks
            source = doc
            for part in draw(st.sampled_from(_paths(doc))):
                source = source[part]
            parent[path[-1]] = copy.deepcopy(source)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(JSON_VALUES)
        else:
            parent.insert(path[-1], draw(JSON_VALUES))
    return doc


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    """``data`` with one to three byte-level edits."""
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            return draw(st.binary(max_size=16))
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]))
        if op == "flip":
            data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data = data[:at] + chunk + data[at + len(chunk) :]
        elif op == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 8)) :]
        else:
            data = data[:at]
    return data


def loads_or_refuses(load, *args) -> bool:
    """True when ``load`` worked, False when it raised a ZooError; anything else fails the test."""
    try:
        load(*args)
    except ZooError as e:
        assert "\n" not in str(e), str(e)
        return False
    return True


# --- specs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_mutated_spec_json_parses_or_is_refused(profile, no_network):
    from rspnet_zoo.spec.io import parse_spec

    bases = [json.loads(text) for text in BASE_SPECS]

    @settings(settings.get_profile(profile))
    @given(st.sampled_from(range(len(bases))).flatmap(lambda i: mutated_json(bases[i])))
    def check(doc):
        loads_or_refuses(parse_spec, json.dumps(doc))
        assert not no_network

    check()


@pytest.mark.parametrize("profile", PROFILES)
def test_mutated_spec_bytes_load_or_are_refused(profile, tmp_path, no_network):
    from rspnet_zoo.spec.io import load_spec

    bases = [text.encode() for text in BASE_SPECS]
    file = tmp_path / "spec.json"

    @settings(settings.get_profile(profile))
    @given(st.sampled_from(range(len(bases))).flatmap(lambda i: mutated_bytes(bases[i])))
    def check(data):
        file.write_bytes(data)
        loads_or_refuses(load_spec, file)
        assert not no_network

    check()


# --- built folders: weights and config.json --------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from rspnet_zoo.training.tasks import BuildRequest, run_build

    return Path(run_build(BuildRequest(str(TINY), out=tmp_path_factory.mktemp("built")))["path"])


def _weights_mutations(data: bytes):
    """Raw byte edits, plus edits of the JSON header that keep it parseable (dtypes, shapes, offsets)."""
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])

    def with_header(doc: Any) -> bytes:
        text = json.dumps(doc).encode()
        return struct.pack("<Q", len(text)) + text + data[8 + size :]

    return mutated_bytes(data) | mutated_json(header).map(with_header)


@pytest.mark.parametrize("profile", PROFILES)
def test_mutated_weights_load_or_are_refused_before_the_network(profile, tmp_path, built, no_network, monkeypatch):
    """read_weights, read_header, a trained tag's cfg and a whole ``local-dir:`` load: a refused file is
    refused before any network is allocated."""
    import shutil

    monkeypatch.setenv("RSPNET_ZOO_ALLOW_UNTRAINED", "1")  # the build's initialised weights, asked for (part 2)

    from rspnet_zoo.zoo.catalog import trained_cfg
    from rspnet_zoo.zoo.registry import load_trained, resolve_genotype
    from rspnet_zoo.zoo.weights import read_header, read_weights

    folder = tmp_path / "folder"
    shutil.copytree(built, folder)
    file = folder / "model.safetensors"
    genotype = resolve_genotype(str(folder))

    @settings(settings.get_profile(profile))
    @given(_weights_mutations((built / "model.safetensors").read_bytes()))
    def check(data):
        file.write_bytes(data)
        for load in (read_weights, read_header, lambda f: trained_cfg(genotype, f)):
            loads_or_refuses(load, file)
        assert not no_network
        if not loads_or_refuses(load_trained, str(folder)):
            assert not no_network
        no_network.clear()

    check()


@pytest.mark.parametrize("profile", PROFILES)
def test_mutated_config_json_resolves_or_is_refused(profile, tmp_path, built, no_network):
    import shutil

    from rspnet_zoo.zoo.registry import resolve_genotype

    folder = tmp_path / "folder"
    shutil.copytree(built, folder)
    config = json.loads((built / "config.json").read_text())
    strategy = mutated_json(config).map(lambda doc: json.dumps(doc).encode()) | mutated_bytes(
        (built / "config.json").read_bytes()
    )

    @settings(settings.get_profile(profile))
    @given(strategy)
    def check(data):
        (folder / "config.json").write_bytes(data)
        loads_or_refuses(resolve_genotype, str(folder))
        assert not no_network

    check()


# --- checkpoints -----------------------------------------------------------------------------------------


def _checkpoint_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("profile", PROFILES)
def test_mutated_checkpoints_load_or_are_refused(profile, tmp_path, no_network):
    """A training checkpoint and a published reference checkpoint, byte-mutated, through the readers of
    resume (load_checkpoint) and convert (read_checkpoint)."""
    from rspnet_zoo.interop.convert import read_checkpoint
    from rspnet_zoo.training.loop import load_checkpoint

    state = {"conv.weight": torch.randn(4, 3, 3, 3), "bn.running_mean": torch.zeros(4)}
    bases = [
        _checkpoint_bytes({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "step": 3}),
        _checkpoint_bytes({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 5}),
    ]
    file = tmp_path / "checkpoint.pt"

    @settings(settings.get_profile(profile))
    @given(st.sampled_from(range(len(bases))).flatmap(lambda i: mutated_bytes(bases[i])))
    def check(data):
        file.write_bytes(data)
        for load in (load_checkpoint, read_checkpoint):
            loads_or_refuses(load, file)
        assert not no_network

    check()
