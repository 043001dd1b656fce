"""Shipped specs and schemas are found from an installed wheel, not only from a checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_wheel_carries_and_finds_specs_and_schemas(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("*.whl")
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
