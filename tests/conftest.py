"""Shared fixtures: every test gets its own zoo home, so nothing touches ~/.cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def zoo_home(tmp_path, monkeypatch):
    home = tmp_path / "zoo-home"
    monkeypatch.setenv("RSPNET_ZOO_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def one_torch_thread():
    """Searches run many small ops: one thread each keeps them from spin-waiting on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from rspnet_zoo.cli.app import main

    def run(*args: str):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def camvid(tmp_path):
    """``--data camvid --root DIR`` of a CamVid-layout folder: 4 training and 2 validation images, 24x32."""
    root = tmp_path / "camvid"
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for k in range(count):
            Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(root / split / f"f{k}.png")
            Image.fromarray(rng.integers(0, 12, (24, 32), dtype=np.uint8), mode="L").save(
                root / f"{split}annot" / f"f{k}.png"
            )
    return ("--data", "camvid", "--root", str(root))
