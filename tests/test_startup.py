"""What the fast paths load: ``--help``, ``--version`` and ``validate`` never import torch or timm, while
``import rspnet_zoo`` still registers every shipped spec with timm, whichever is imported first."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
HEAVY = ("torch", "timm")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def _imported(importtime_log: str) -> set[str]:
    """Module names from ``python -X importtime`` lines: 'import time: self | cumulative | name'."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime_log.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["search", "--help"], ["list", "--help"]])
def test_fast_paths_import_neither_torch_nor_timm(args):
    result = _run("-X", "importtime", "-m", "rspnet_zoo", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = _imported(result.stderr)
    assert "rspnet_zoo.cli" in imported  # the log is the one we think it is
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_validate_checks_every_shipped_spec_and_a_broken_one_without_torch_or_timm(tmp_path):
    # A spec with a timm encoder is also checked against timm itself (tests/test_encoders.py); the others never
    # need more than the torch-free spec layer.
    shipped = sorted(str(p) for p in (ROOT / "genotypes").glob("*.json") if '"encoders"' not in p.read_text())
    assert len(shipped) >= 14
    doc = json.loads(Path(shipped[0]).read_text())
    doc["cells"][next(iter(doc["cells"]))]["steps"][0]["edges"][0]["op"] = "no_such_op"  # caught by lowering
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    result = _run("-X", "importtime", "-m", "rspnet_zoo", "validate", *shipped, str(broken))
    assert result.returncode == 2
    assert result.stdout.count("ok  ") == len(shipped)
    assert "unknown op 'no_such_op'" in result.stderr
    imported = _imported(result.stderr)
    assert "rspnet_zoo.spec.plan" in imported  # the semantic checks ran
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_version_prints_the_package_version():
    import rspnet_zoo

    result = _run("-m", "rspnet_zoo", "--version")
    assert result.stdout.strip() == f"rspnet-zoo {rspnet_zoo.__version__}"


SHIPPED_NAMES = sorted(json.loads(p.read_text())["name"] for p in (ROOT / "genotypes").glob("*.json"))

# each line: what a user may do first; every shipped spec must be a timm architecture afterwards
# (timm first, then the package, is what this test process itself does)
ORDERS = {
    "package then timm": "import rspnet_zoo; import timm",
    "timm then package": "import timm; import rspnet_zoo",
    "a torch-side module first": "from rspnet_zoo.nn.model import GenotypeNet; import timm",
    "a timm submodule first": "import rspnet_zoo; from timm.layers import DropPath; import timm",
    "the trainer first": "from rspnet_zoo.training.loop import train; import timm",
}
SLOW_ORDERS = {
    "timm then package",
    "a timm submodule first",
    "the trainer first",
}  # each a fresh interpreter: `pytest -m slow`


@pytest.mark.parametrize("order", [pytest.param(o, marks=pytest.mark.slow) if o in SLOW_ORDERS else o for o in ORDERS])
def test_import_rspnet_zoo_registers_every_shipped_spec(order):
    code = f"{ORDERS[order]}; import json; print(json.dumps(timm.list_models()))"
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    registered = set(json.loads(result.stdout))
    assert set(SHIPPED_NAMES) <= registered
    assert "rspnet" in registered


def test_import_rspnet_zoo_alone_defers_torch_and_timm():
    result = _run("-c", "import sys, rspnet_zoo; print(sorted(m for m in ('torch', 'timm') if m in sys.modules))")
    assert result.stdout.strip() == "[]", result.stderr[-2000:]


def test_public_names_resolve_on_first_use():
    import rspnet_zoo
    import rspnet_zoo.nn.fold  # the module behind optimize has its own name: the function stays the function

    assert rspnet_zoo.optimize is sys.modules["rspnet_zoo.nn.fold"].optimize
    assert sorted(rspnet_zoo.SHIPPED) == SHIPPED_NAMES
    assert rspnet_zoo.GenotypeNet.__module__ == "rspnet_zoo.nn.model"


def test_normalisation_constants_are_timms():
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from rspnet_zoo.spec.constants import IMAGENET_DEFAULT_MEAN as mean
    from rspnet_zoo.spec.constants import IMAGENET_DEFAULT_STD as std

    assert (mean, std) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)


def test_import_timm_reads_nothing_in_the_zoo_home(tmp_path):
    """Registering at ``import timm`` reads package data only; the zoo home is read when a name is built."""
    home = tmp_path / "home"
    (home / "rspnet_small.mine").mkdir(parents=True)
    code = (
        "import sys, json\n"
        f"home = {str(home)!r}\n"
        "seen = []\n"
        "sys.addaudithook(lambda event, args: seen.append(str(args[0])) "
        "if event in ('open', 'os.scandir', 'os.listdir', 'glob.glob') and args and home in str(args[0]) else None)\n"
        "import rspnet_zoo, timm\n"
        "assert 'rspnet_small' in timm.list_models()\n"
        "print(json.dumps(seen))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "RSPNET_ZOO_HOME": str(home)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == []


MOVED = {
    "rspnet_zoo.model": "rspnet_zoo.nn.model",
    "rspnet_zoo.specfile": "rspnet_zoo.spec.io",
    "rspnet_zoo.ops": "rspnet_zoo.nn.ops",
    "rspnet_zoo.heads": "rspnet_zoo.nn.heads",
    "rspnet_zoo.latency": "rspnet_zoo.perf.latency",
    "rspnet_zoo.export": "rspnet_zoo.interop.export",
    "rspnet_zoo.train": "rspnet_zoo.training.loop",
}


def test_old_module_paths_import_with_a_deprecation_warning():
    """Each old path, imported first in one fresh interpreter, warns and names its new place."""
    code = (
        "import importlib, json, warnings\n"
        f"moved = {MOVED!r}\n"
        "missing = []\n"
        "for old, new in moved.items():\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        importlib.import_module(old)\n"
        "    if not any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught):\n"
        "        missing.append(old)\n"
        "print(json.dumps(missing))\n"
    )
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == []


def test_old_zoo_names_resolve_with_a_deprecation_warning():
    import rspnet_zoo.zoo
    from rspnet_zoo.zoo.catalog import SHIPPED

    with pytest.warns(DeprecationWarning, match="rspnet_zoo.zoo.catalog"):
        assert rspnet_zoo.zoo.SHIPPED is SHIPPED
