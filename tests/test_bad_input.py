"""Bad input of every kind a user meets is one line on stderr naming the file, exit code 2, no traceback,
and nothing half-written: output paths that cannot be written (checked before any work), damaged
safetensors, foreign config.json files, unreadable checkpoints, damaged or oversized images, and builds
that run out of memory. Odd but valid images (16-bit, palette) are read with their true values."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rspnet_zoo.data.files import MAX_IMAGE_PIXELS, read_image

TINY = Path(__file__).parent / "data" / "tiny_net.json"
SMOKE_SEARCH = ("search", "--stage", "cell", "--budget", "smoke", "--no-progress")


@pytest.fixture(autouse=True)
def untrained_weights_allowed(monkeypatch):
    """The built folders here hold initialised weights; loading those is asked for explicitly (issue 11,
    part 2), so that the damage under test is what gets refused."""
    monkeypatch.setenv("RSPNET_ZOO_ALLOW_UNTRAINED", "1")


def refused(run_cli, *args, needle: str = "") -> str:
    code, stdout, err = run_cli(*map(str, args))
    assert code == 2, (args, code, err)
    assert stdout == "" and "Traceback" not in err, (args, err)
    assert err.count("\n") == 1 and err.startswith("rspnet-zoo: error: "), (args, err)
    assert needle in err, (args, needle, err)
    return err


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A built tiny_net folder, shared read-only by the tests that need a model."""
    from rspnet_zoo.training.tasks import BuildRequest, run_build

    out = tmp_path_factory.mktemp("built")
    return Path(run_build(BuildRequest(str(TINY), out=out))["path"])


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def unwritable(tmp_path):
    """A folder nobody may write into: mode 0555, or immutable where the tests run as root."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if not immutable:
            pytest.skip("running as root without chattr: every folder is writable")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


# --- output paths: refused up front ---------------------------------------------------------------------


def _commands(built: Path, image: Path, out: Path, run_dir: Path) -> dict[str, tuple]:
    return {
        "build": ("build", TINY, "--out", out),
        "predict": ("predict", built, image, "--out", out),
        "data sample": ("data", "sample", out, "--size", "16"),
        "show --plot": ("show", TINY, "--plot", out),
        "search": (*SMOKE_SEARCH, "--out", out, "--run-dir", run_dir),
        "export": ("export", TINY, "--size", "32", "--out", out),
    }


FILE_OUTPUTS = {"data sample": "o.png", "show --plot": "o.svg", "search": "o.json", "export": "o.onnx"}


@pytest.mark.parametrize("command", ["build", "predict", "data sample", "show --plot", "search", "export"])
@pytest.mark.parametrize("kind", ["wrong kind", "under a file", "unwritable"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(
    run_cli, tmp_path, built, image, command, kind, request
):
    name = FILE_OUTPUTS.get(command, "out")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    if kind == "wrong kind":  # a file where a folder is meant, or a folder where a file is meant
        out = a_file if command not in FILE_OUTPUTS else tmp_path / name
        if command in FILE_OUTPUTS:
            out.mkdir()
        needle = "is a file" if command not in FILE_OUTPUTS else "is a folder"
    elif kind == "under a file":
        out, needle = a_file / name, "is a file, not a folder"
    else:
        out, needle = request.getfixturevalue("unwritable") / name, "no write permission"
    run_dir = tmp_path / "run"
    before = listing(tmp_path)
    refused(run_cli, *_commands(built, image, out, run_dir)[command], needle=needle)
    assert listing(tmp_path) == before  # no run folder, no temporary file: the search never started


def test_search_checks_its_run_folder_too(run_cli, tmp_path):
    (tmp_path / "a_file").write_text("x")
    refused(
        run_cli,
        *SMOKE_SEARCH,
        "--out",
        tmp_path / "s.json",
        "--run-dir",
        tmp_path / "a_file" / "run",
        needle="is a file, not a folder",
    )
    assert not (tmp_path / "s.json").exists()


def test_an_empty_zoo_home_means_the_default(monkeypatch):
    from rspnet_zoo.zoo.home import zoo_home

    monkeypatch.setenv("RSPNET_ZOO_HOME", "")
    assert zoo_home() == Path("~/.cache/rspnet-zoo").expanduser()


# --- safetensors: every reader ---------------------------------------------------------------------------


def corruptions(data: bytes) -> dict[str, bytes]:
    header = struct.unpack("<Q", data[:8])[0]
    return {
        "empty": b"",
        "truncated header length": data[:5],
        "truncated header": data[: 8 + header // 2],
        "truncated data": data[: len(data) - 16],
        "header not JSON": data[:8] + b"{" * header + data[8 + header :],
        "huge header length": struct.pack("<Q", 1 << 62) + data[8:],
        "header length past the end": struct.pack("<Q", len(data)) + data[8:],
    }


READERS = ["build --weights", "predict folder", "eval tag", "convert from", "convert --to tag"]


@pytest.mark.parametrize("reader", READERS)
def test_damaged_safetensors_are_one_line_for_every_reader(run_cli, tmp_path, zoo_home, built, image, reader):
    data = (built / "model.safetensors").read_bytes()
    for label, damaged in corruptions(data).items():
        file = tmp_path / label.replace(" ", "_") / "model.safetensors"
        if reader == "predict folder":
            shutil.copytree(built, file.parent)
        elif reader in ("eval tag", "convert --to tag"):
            file = zoo_home / "rspnet_small.bad" / "model.safetensors"
            file.parent.mkdir(parents=True, exist_ok=True)
        else:
            file.parent.mkdir()
        file.write_bytes(damaged)
        args = {
            "build --weights": ("build", TINY, "--out", tmp_path / "o", "--weights", file),
            "predict folder": ("predict", file.parent, image, "--out", tmp_path / "o"),
            "eval tag": ("eval", "rspnet_small.bad", "--length", "1", "--size", "16"),
            "convert from": ("convert", "darts", file, "--spec", "darts_v2_cifar", "--out", tmp_path / "o"),
            "convert --to tag": ("convert", "--to", "darts", "rspnet_small.bad", "--out", tmp_path / "o.pth"),
        }[reader]
        refused(run_cli, *args, needle=str(file))
        assert not (tmp_path / "o").exists() and not (tmp_path / "o.pth").exists(), label


# --- config.json of a built folder -----------------------------------------------------------------------

FOREIGN_CONFIGS = {
    "a list": ([1, 2], "/"),
    "empty": ({}, "/architecture"),
    "Hugging Face": ({"architectures": ["BertModel"], "model_type": "bert"}, "/architecture"),
    "num_classes text": ({"architecture": "rspnet", "num_classes": "9"}, "/num_classes"),
    "no model_args": ({"architecture": "rspnet", "num_classes": 9}, "/model_args"),
    "model_args a list": (
        {"architecture": "rspnet", "num_classes": 9, "pretrained_cfg": {}, "model_args": []},
        "/model_args",
    ),
    "genotype a number": (
        {"architecture": "rspnet", "num_classes": 9, "pretrained_cfg": {}, "model_args": {"genotype": 5}},
        "/model_args/genotype",
    ),
}


@pytest.mark.parametrize("label", FOREIGN_CONFIGS)
def test_a_foreign_config_json_is_named_with_a_pointer(run_cli, tmp_path, built, image, label):
    config, where = FOREIGN_CONFIGS[label]
    folder = tmp_path / "folder"
    shutil.copytree(built, folder)
    (folder / "config.json").write_text(json.dumps(config))
    for args in (("predict", folder, image, "--out", tmp_path / "o"), ("show", folder)):
        err = refused(run_cli, *args, needle=f"{folder / 'config.json'}: {where}: ")
        assert "not a folder built by rspnet-zoo" in err
    assert not (tmp_path / "o").exists()


def test_an_invalid_genotype_in_config_json_is_named_with_its_pointer(run_cli, tmp_path, built):
    folder = tmp_path / "folder"
    shutil.copytree(built, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_args"]["genotype"]["defaults"]["num_classes"] = -1
    (folder / "config.json").write_text(json.dumps(config))
    refused(run_cli, "show", folder, needle=f"{folder / 'config.json'}: /model_args/genotype/defaults/num_classes: ")


# --- checkpoints read by torch.load ----------------------------------------------------------------------


class _Payload:
    def __reduce__(self):
        return (os.system, ("true",))


def checkpoint_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    torch.save({"model": {"w": torch.zeros(1)}, "hook": _Payload()}, tmp_path / "code.pt")
    files["code"] = tmp_path / "code.pt"
    (tmp_path / "legacy.pt").write_bytes(pickle.dumps({"w": 1}, protocol=4))
    files["plain pickle"] = tmp_path / "legacy.pt"
    data = (tmp_path / "code.pt").read_bytes()
    for label, content in {"truncated": data[: len(data) // 2], "empty": b"", "noise": os.urandom(512)}.items():
        (tmp_path / f"{label}.pt").write_bytes(content)
        files[label] = tmp_path / f"{label}.pt"
    return files


def test_unreadable_checkpoints_are_one_line_for_convert_and_resume(run_cli, tmp_path):
    files = checkpoint_files(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for label, file in files.items():
        err = refused(run_cli, "convert", "darts", file, "--spec", "darts_v2_cifar", "--out", tmp_path / "o")
        assert ("refused" in err and "posix.system" in err) if label == "code" else "not a readable checkpoint" in err
        shutil.copy(file, run_dir / "checkpoint.pt")
        resume = ("train", TINY, "--iterations", "1", "--length", "2", "--batch-size", "2", "--tag", "t")
        refused(run_cli, *resume, "--resume", "--out", run_dir, needle=str(run_dir / "checkpoint.pt"))
    assert not (tmp_path / "o").exists()


# --- images ----------------------------------------------------------------------------------------------


def png(array: np.ndarray, bit_depth: int, colour_type: int, size: tuple[int, int] | None = None) -> bytes:
    """A PNG written by hand: 16-bit RGB (PIL cannot write it), or a header claiming ``size``."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    h, w = size or array.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = b"".join(b"\0" + row.astype(dtype).tobytes() for row in array)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    grey = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    (tmp_path / "g.png").write_bytes(png(grey, 16, 0))
    assert Image.open(tmp_path / "g.png").mode.startswith("I;16")
    x = read_image(tmp_path / "g.png")
    expected = torch.from_numpy(grey.astype(np.float32) / 65535)
    assert x.shape == (3, 1, 4) and torch.equal(x[0], expected) and torch.equal(x[2], expected)


def test_16_bit_rgb_keeps_its_range(tmp_path):
    rgb = np.array([[[0, 32768, 65535], [1000, 50000, 20000]]], dtype=np.uint16)
    (tmp_path / "c.png").write_bytes(png(rgb, 16, 2))
    x = read_image(tmp_path / "c.png").permute(1, 2, 0).numpy()
    assert np.abs(x - rgb / 65535).max() <= 1 / 255  # read at 8 bits: within one 8-bit step, never clipped


def test_palette_and_grey_alpha_images_read_their_colours(tmp_path):
    colours = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30]], dtype=np.uint8)
    index = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    p = Image.fromarray(index, mode="P")
    p.putpalette(colours.flatten().tolist())
    p.save(tmp_path / "p.png")
    x = read_image(tmp_path / "p.png")
    assert torch.equal(x, torch.from_numpy(colours[index].astype(np.float32) / 255).permute(2, 0, 1))
    la = np.stack([index * 100, np.full_like(index, 7)], axis=-1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    alpha = 7 / 255  # nearly transparent grey, composited over white as a viewer shows it
    expected = torch.from_numpy(index * 100 / 255 * alpha + (1 - alpha)).float()
    torch.testing.assert_close(read_image(tmp_path / "la.png")[1], expected)


def test_damaged_and_oversized_images_are_one_line(run_cli, tmp_path, built, image):
    data = image.read_bytes()
    Image.open(image).save(tmp_path / "in.jpg")
    jpeg = (tmp_path / "in.jpg").read_bytes()
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    cases = {
        "truncated.png": (data[: len(data) // 2], "truncated or damaged"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "empty.png": (b"", "not a readable image"),
        "text.png": (b"hello", "not a readable image"),
        "over_limit.png": (png(np.zeros((1, 1)), 8, 0, size=(side, side)), f"more than the {MAX_IMAGE_PIXELS:,}"),
        "bomb_warning.png": (png(np.zeros((1, 1)), 8, 0, size=(10_000, 10_000)), "refused, more than"),
        "bomb_error.png": (png(np.zeros((1, 1)), 8, 0, size=(20_000, 20_000)), "refused, more than"),
        "float.tif": (None, "floating-point"),
    }
    for name, (content, needle) in cases.items():
        path = tmp_path / name
        if content is None:
            Image.fromarray(np.zeros((4, 4), dtype=np.float32), mode="F").save(path)
        else:
            path.write_bytes(content)
        err = refused(run_cli, "predict", built, path, "--out", tmp_path / "o", needle=f"{path}: ")
        assert needle.lower() in err.lower(), (name, err)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_the_pixel_limit_is_stated_in_help(run_cli):
    code, out, _ = run_cli("predict", "--help")
    w, h = 4096, MAX_IMAGE_PIXELS // 4096
    assert code == 0 and f"{w}x{h}" in " ".join(out.split())


# --- out of memory ---------------------------------------------------------------------------------------


def test_a_build_that_runs_out_of_memory_is_one_line(run_cli, tmp_path, monkeypatch):
    """The CPU allocator's RuntimeError, as torch raises it when an allocation fails."""
    import rspnet_zoo.zoo.folder as artifacts

    def no_memory(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 2243413792 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(artifacts, "create_genotype_net", no_memory)
    refused(run_cli, "build", TINY, "--out", tmp_path / "o", needle="out of memory building 'tiny_net'")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


@pytest.mark.slow
def test_a_real_out_of_memory_build_is_one_line(tmp_path):
    """A 560M-parameter head built under an address-space limit 1.5 GB above what the CLI needs to start."""
    import resource
    import sys

    spec = json.loads(TINY.read_text())
    spec["name"], spec["head"]["channels"], spec["defaults"]["num_classes"] = "big_head", 4096, 100_000
    (tmp_path / "big.json").write_text(json.dumps(spec))
    probe = (
        "import rspnet_zoo.cli.app, rspnet_zoo.training.tasks, rspnet_zoo.zoo.folder; "
        "print(open('/proc/self/status').read())"
    )
    status = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    peak_kb = int(status.split("VmPeak:")[1].split()[0])
    limit = (peak_kb + 1_500_000) * 1024

    run = subprocess.run(
        [sys.executable, "-m", "rspnet_zoo", "build", str(tmp_path / "big.json"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "out of memory building 'big_head'" in run.stderr
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
