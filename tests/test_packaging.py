"""The wheel built from the tree carries the shipped specs and schemas, installs, and runs where it is installed."""

import json
import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import rspnet_zoo
from rspnet_zoo import load_spec, spec_sha256

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel`` of the tree (hatchling from the configured package index; no dependencies)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(out)],
        check=True,
        capture_output=True,
    )
    [file] = out.glob("*.whl")
    return file


@pytest.mark.slow
def test_wheel_carries_and_finds_specs_and_schemas(wheel, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    for spec in ROOT.glob("genotypes/*.json"):
        assert f"rspnet_zoo/_data/genotypes/{spec.name}" in names
    assert "rspnet_zoo/_data/schemas/genotype.v1.json" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import rspnet_zoo, timm; from rspnet_zoo.resources import data_dir; "
        "print(data_dir('genotypes')); print(len(rspnet_zoo.SHIPPED)); timm.create_model('rspnet_small')"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(target), "PATH": ""},
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.split()
    assert out[0] == str(target / "rspnet_zoo" / "_data" / "genotypes")
    assert int(out[1]) == len(list(ROOT.glob("genotypes/*.json")))


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_validates_its_packaged_specs(wheel, tmp_path):
    """A fresh virtual environment, the wheel installed into it with pip (nothing downloaded: its dependencies
    are this interpreter's, reached through a .pth file), then its ``rspnet-zoo`` console script, run from an
    unrelated folder, reports its version and validates the specs the wheel carries."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    venv_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    dependencies = {sysconfig.get_path("purelib"), *site.getsitepackages()}
    (venv_site / "_dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    script = venv / ("Scripts/rspnet-zoo.exe" if os.name == "nt" else "bin/rspnet-zoo")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"RSPNET_ZOO_HOME": str(tmp_path / "home")}
    where = subprocess.run(
        [str(python), "-c", "import rspnet_zoo.resources as r; print(r.data_dir('genotypes'))"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    ).stdout.strip()
    packaged = sorted(Path(where).glob("*.json"))
    assert Path(where).is_relative_to(venv_site) and len(packaged) == len(list(ROOT.glob("genotypes/*.json")))

    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert version.returncode == 0, version.stderr[-2000:]
    assert version.stdout.split() == ["rspnet-zoo", rspnet_zoo.__version__]
    result = subprocess.run(
        [str(script), "validate", "--json", *map(str, packaged)], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert sorted(r["name"] for r in report if r["ok"]) == sorted(p.stem for p in packaged)
    assert {r["sha256"] for r in report} == {spec_sha256(load_spec(p)) for p in ROOT.glob("genotypes/*.json")}


@pytest.mark.slow
def test_wheel_metadata_carries_the_package_version(wheel):
    metadata = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA"))
    lines = zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
    assert f"Version: {rspnet_zoo.__version__}" in lines
    assert wheel.name.startswith(f"rspnet_zoo-{rspnet_zoo.__version__}-")
