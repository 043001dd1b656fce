"""A fuzz test of the whole CLI, driven by a corpus of hostile inputs (``data/cli_fuzz_corpus.json``).

Each example lays out a fresh working tree holding every kind of file a path may meet (specs good, bad,
forged and huge; images; a built folder; folders, symlinks, a symlink loop, a dangling link, a FIFO,
device nodes; names with markup and control characters), draws a command line over it from the cheap
commands (validate, show, diff, list, build, import, data sample, predict, convert, and the argument
checks of train, search and bench), runs it in-process and holds the invariant:

- it exits 0 with the output it promises, or 2 with exactly one line on stderr (diff: 1 for different);
  nothing else escapes (a traceback fails the test), and no output line holds a control character;
- no file outside the outputs the command line names changed (a snapshot of the tree before and after),
  and no FIFO, device or symlink was replaced.

The corpus's command lines are replayed on every run; its atoms seed the strategies. A failure the fuzz
test finds is shrunk by hypothesis; add its command line to the corpus. The default profile runs in
seconds; ``pytest -m slow`` runs the thorough one (thousands of examples).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from rspnet_zoo.cli.app import main

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_net.json"
CORPUS = json.loads((DATA / "cli_fuzz_corpus.json").read_text())
PREFIX = "rspnet-zoo: error: "
NAS_SEGM_CONFIG = (  # nas-segm's published arch0 (tests/published.py)
    "[[[3, 0, 1], [4, 1, 1], [3, 1, 1]], [[0, 1, 0, 0, 1], [2, 1, 2, 1, 0], [3, 1, 1, 1, 0], [1, 1, 2, 0, 0], "
    "[3, 0, 2, 0, 0], [5, 3, 2, 1, 0], [0, 5, 0, 1, 0]]]"
)

settings.register_profile(
    "cli-fuzz",
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples every run: the default suite stays deterministic
    suppress_health_check=list(HealthCheck),
)
settings.register_profile("cli-fuzz-thorough", settings.get_profile("cli-fuzz"), max_examples=3000, derandomize=False)


# ---- the working tree -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_folder(tmp_path_factory) -> Path:
    from rspnet_zoo.training.tasks import BuildRequest, run_build

    out = tmp_path_factory.mktemp("built")
    return Path(run_build(BuildRequest(str(TINY), out=out))["path"])


def make_tree(root: Path, built: Path) -> Path:
    """``root/work`` (the working directory), ``root/outside`` (a sibling) and ``root/home`` (the zoo home)."""
    work, outside = root / "work", root / "outside"
    work.mkdir(parents=True)
    outside.mkdir()
    (outside / "keep.txt").write_text("outside")
    tiny = json.loads(TINY.read_text())
    files = {
        "tiny.json": tiny,
        "markup.json": {**tiny, "description": "[/oops] [bold red]x[/] rspnet-zoo: ok, validated"},
        "rspnet_named.json": {**tiny, "name": "rspnet_small"},
        "bad.json": {**tiny, "network": {"nodes": []}},
    }
    for name, doc in files.items():
        (work / name).write_text(json.dumps(doc))
    forged = json.loads(TINY.read_text())
    forged["cells"]["c"]["steps"][0]["edges"][0]["op"] = "x\nrspnet-zoo: ok, validated"
    (work / "forged.json").write_text(json.dumps(forged))
    (work / "empty.json").write_text("")
    (work / "garbage.bin").write_bytes(b"\x80\x02not a pickle")
    with open(work / "huge.json", "wb") as f:  # past the spec cap, sparse
        f.truncate(9 * 2**20)
    (work / "d[").mkdir()
    (work / "d[" / "x].json").write_text(json.dumps(tiny))  # the path 'd[/x].json' holds a closing tag
    (work / "a\nb.json").write_text(json.dumps(tiny))
    pixels = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    for name in ("img.png", "img_overlay.png", "[bold]img.png"):
        Image.fromarray(pixels).save(work / name)
    shutil.copytree(built.parent, work / "built")
    (work / "dir").mkdir()
    (work / "dir" / "inner.txt").write_text("inner")
    (work / "outdir").mkdir()
    links = {"link_file": "tiny.json", "link_dir": "dir", "dangling": "missing", "loop_a": "loop_b"}
    links |= {"loop_b": "loop_a", "loop.json": "loop.json", "devnull": "/dev/null", "devzero": "/dev/zero"}
    links |= {"link_out": "../outside"}
    for name, target in links.items():
        os.symlink(target, work / name)
    os.mkfifo(work / "fifo")
    if os.geteuid() == 0:  # a character device of our own (a copy of /dev/null)
        os.mknod(work / "nullcopy", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return work


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` (symlinks not followed) with what it is: kind, identity and content."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read(1 << 20)).hexdigest()
                found[path] = ("file", info.st_ino, info.st_size, info.st_mtime_ns, digest)
            elif stat.S_ISLNK(info.st_mode):
                found[path] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[path] = ("dir",)
            else:
                found[path] = ("special", info.st_ino, info.st_mode, info.st_rdev)
    return found


# ---- command lines ----------------------------------------------------------------------------------------

LONG = "n" * 300  # past NAME_MAX
SPECS = ["tiny.json", "markup.json", "forged.json", "bad.json", "empty.json", "huge.json", "rspnet_named.json"]
SPECS += ["d[/x].json", "a\nb.json", "devzero", "fifo", "loop_a", "dir", "dangling", "link_file", "missing.json"]
SPECS += ["rspnet_small", "built/tiny_net", "garbage.bin", "loop.json", LONG + ".json"]
IMAGES = ["img.png", "img_overlay.png", "[bold]img.png", "fifo", "huge.json", "tiny.json", "dir", "loop_a", "devzero"]
MODELS = ["built/tiny_net", "rspnet_small", "tiny.json", "fifo", "dir", "loop_a", "loop.json", "missing", "[/x]", LONG]
OUT_FILES = ["out.png", "new/sub/out.png", "img.png", "tiny.json", "fifo", "devnull", "/dev/null", "loop_a"]
OUT_FILES += ["dangling", "dir", "link_file", "link_out/x.png", "../outside/x.png", "a\nb.png", "[/x]/y.png", "o.svg"]
OUT_FILES += ["built/tiny_net/model.safetensors", "nullcopy", "dir/inner.txt", "loop.json", LONG + ".png"]
OUT_DIRS = ["outdir", "newdir/sub", "built", "dir", "link_dir", "link_out", "fifo", "img.png", "loop_a", "."]
OUT_DIRS += ["../outside", "dangling", "devnull"]


def either(plausible: list[str], hostile: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """About half the time a value that passes its check, so that the commands also get to their work."""
    return st.one_of(st.sampled_from(plausible), hostile)


NO_NUL = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))  # argv cannot hold NUL
FREE = st.text(NO_NUL, max_size=10)
NAMES = either(["ok_name", "t1", "synth"], st.sampled_from(CORPUS["names"]) | FREE)
NUMBERS = either(
    ["0", "1", "2", "3"],
    st.sampled_from(CORPUS["numbers"]) | st.integers(-(2**40), 2**40).map(str) | st.floats().map(repr),
)
SIZES = either(
    ["8", "16x24", "12x12"],
    st.sampled_from(CORPUS["sizes"]) | st.tuples(st.integers(-2, 40), st.integers(-2, 40)).map("{0[0]}x{0[1]}".format),
)
SPEC = either(["tiny.json", "markup.json", "rspnet_small"], st.sampled_from(SPECS))
IMAGE = either(["img.png", "[bold]img.png"], st.sampled_from(IMAGES) | FREE)
MODEL = either(["built/tiny_net"], st.sampled_from(MODELS))
OUT_FILE = either(["out.png", "new/sub/out.png", "o.svg"], st.sampled_from(OUT_FILES) | FREE)
OUT_DIR = either(["outdir", "newdir/sub"], st.sampled_from(OUT_DIRS))


def opt(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """``[flag, value]`` or nothing."""
    return st.one_of(st.just([]), values.map(lambda v: [flag, v]))


def flag(name: str) -> st.SearchStrategy[list[str]]:
    return st.sampled_from([[], [name]])


def line(*parts: st.SearchStrategy[list[str]] | list[str]) -> st.SearchStrategy[list[str]]:
    drawn = [p if isinstance(p, st.SearchStrategy) else st.just(p) for p in parts]
    return st.tuples(*drawn).map(lambda ps: [word for p in ps for word in p])


def one(values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return values.map(lambda v: [v])


COMMAND_LINES = st.one_of(
    line(["validate"], one(SPEC | FREE), flag("--json")),
    line(["show"], one(SPEC), opt("--plot", OUT_FILE), flag("--json")),
    line(["diff"], one(SPEC), one(SPEC), flag("--no-sizes"), flag("--json")),
    line(["list", "--json"]),
    line(["build"], one(SPEC), opt("--out", OUT_DIR), opt("--seed", NUMBERS), flag("--force")),
    line(["build"], one(SPEC), opt("--out", OUT_DIR), opt("--num-classes", NUMBERS), flag("--json")),
    line(
        ["import", "nas-segm"],
        one(st.sampled_from([NAS_SEGM_CONFIG, "[[", "[]"]) | FREE),
        opt("--name", NAMES),
        opt("--out", OUT_FILE | OUT_DIR),
        opt("--classes", NUMBERS),
        opt("--agg-size", NUMBERS),
        flag("--force"),
    ),
    line(
        ["data", "sample"],
        one(OUT_FILE),
        opt("--size", SIZES),
        opt("--seed", NUMBERS),
        opt("--index", NUMBERS),
        opt("--mask", OUT_FILE),
        opt("--split", st.sampled_from(["val", "train", "none_such"])),
        flag("--json"),
    ),
    line(
        ["predict"],
        one(MODEL),
        st.lists(IMAGE, min_size=1, max_size=2),
        ["--out"],
        one(OUT_DIR),
        opt("--alpha", NUMBERS),
        flag("--json"),
    ),
    line(
        ["convert", "nas-segm"],
        one(st.sampled_from(["garbage.bin", "empty.json", "fifo", "devzero", "loop_a", "huge.json", "dir"])),
        ["--spec", "nas_segm_arch0"],
        opt("--out", OUT_DIR),
        opt("--name", NAMES),
        opt("--tag", NAMES),
        flag("--force"),
    ),
    line(["convert", "--to", "darts"], one(MODEL), ["--out"], one(OUT_FILE)),
    line(
        ["train"],
        one(SPEC),
        opt("--lr", NUMBERS),
        opt("--seed", NUMBERS),
        opt("--tag", NAMES),
        opt("--crop", SIZES),
        opt("--batch-size", NUMBERS),
        ["--data", "folder", "--root", "missing_root"],
    ),
    line(
        ["search", "--budget", "none_such"],
        opt("--latency-target", NUMBERS),
        opt("--seed", NUMBERS),
        opt("--workers", NUMBERS),
        opt("--threads", NUMBERS),
        opt("--name", NAMES),
    ),
    line(["bench", "none_such"], opt("--size", SIZES), opt("--batch", NUMBERS), opt("--rounds", NUMBERS)),
)

# ---- the invariant ----------------------------------------------------------------------------------------

OUTPUT_FLAGS = ("--out", "--plot", "--mask")
WRITES_THE_ZOO_HOME = ("build", "convert", "train", "search")


def named_outputs(args: list[str]) -> list[str]:
    """What a command line names as its outputs: the values of --out, --plot and --mask, and the scene of
    ``data sample``."""
    named = [args[i + 1] for i, a in enumerate(args[:-1]) if a in OUTPUT_FLAGS]
    if args[:2] == ["data", "sample"] and len(args) > 2:
        named.append(args[2])
    return named


def allowed(work: Path, home: Path, args: list[str]) -> list[str]:
    """The paths a run may change: each named output (as written and resolved) and what lies under it, and
    the zoo home for the commands that write there when no --out is named."""
    places = []
    for value in named_outputs(args):
        joined = os.path.normpath(os.path.join(work, value))
        places += [joined, os.path.realpath(joined)]
    if args and args[0] in WRITES_THE_ZOO_HOME and "--out" not in args:
        places.append(str(home))
    return places


def default_output(work: Path, args: list[str], path: str, before: dict) -> bool:
    """``path`` is the default output of a command line that names none: ``import`` writes ./<name>.json,
    new, or in place of an existing one only with --force."""
    if args[0] != "import" or "--out" in args or os.path.dirname(path) != str(work) or not path.endswith(".json"):
        return False
    return path not in before or "--force" in args


def inside_or_above(path: str, places: list[str]) -> bool:
    """``path`` is one of ``places`` or under one, or a folder made on the way to one."""
    return any(path == p or path.startswith(p + os.sep) or p.startswith(path + os.sep) for p in places)


def run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    return code, out.getvalue(), err.getvalue()


def check_run(root: Path, work: Path, home: Path, args: list[str]) -> int:
    """Run ``args`` in ``work`` and hold the invariant (module docstring); returns the exit code."""
    before = snapshot(root)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        code, out, err = run(args)
    finally:
        os.chdir(cwd)
    after = snapshot(root)
    shown = f"{args!r}: exit {code}\nstdout: {out[-2000:]!r}\nstderr: {err[-2000:]!r}"

    codes = (0, 1, 2) if args[0] == "diff" else (0, 2)
    assert code in codes, shown
    for text in (out, err):
        assert all(line.isprintable() for line in text.splitlines()), shown
        assert "\r" not in text, shown
    if code == 2 and args[0] == "validate" and "--json" in args and err == "":  # the report is the output
        assert not all(r["ok"] for r in json.loads(out)), shown
    elif code == 2 and args[0] == "validate":  # one line per error, up to 20 and a last line saying so
        assert 1 <= err.count("\n") <= 21 and all(e.startswith(PREFIX) for e in err.splitlines()), shown
    elif code == 2:
        assert err.count("\n") == 1 and err.startswith(PREFIX) and err.endswith("\n"), shown
        assert "Traceback" not in err, shown
    else:
        assert err == "", shown
        check_output(work, args, out, shown)

    places = allowed(work, home, args)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    outside = [p for p in changed if not inside_or_above(p, places) and not default_output(work, args, p, before)]
    assert outside == [], f"{shown}\nchanged outside the named outputs: {outside}"
    replaced = [p for p, sig in before.items() if sig[0] in ("special", "link") and after.get(p) != sig]
    replaced = [p for p in replaced if before[p][0] == "special" or not inside_or_above(p, places)]
    assert replaced == [], f"{shown}\nreplaced: {replaced}"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    return code


def check_output(work: Path, args: list[str], out: str, shown: str) -> None:
    """Exit 0 keeps its promise: JSON when asked, and the outputs it names exist as what they should be."""
    if "--json" in args:
        json.loads(out)
    command = args[:2] if args[0] in ("data", "import", "convert") else args[:1]
    if command == ["data", "sample"]:
        assert (work / args[2]).read_bytes().startswith(b"\x89PNG"), shown
    elif command == ["validate"] and "--json" not in args:
        assert out.startswith("ok  "), shown
    elif command == ["build"]:
        assert "built " in out or "--json" in args, shown


# ---- the tests --------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path, built_folder, monkeypatch):
    """A function that lays out a fresh tree for one example and points the zoo home into it."""
    monkeypatch.setenv("RSPNET_ZOO_ALLOW_UNTRAINED", "1")
    count = iter(range(10**9))

    def fresh() -> tuple[Path, Path, Path]:
        root = tmp_path / f"example{next(count)}"
        work = make_tree(root, built_folder)
        home = root / "home"
        monkeypatch.setenv("RSPNET_ZOO_HOME", str(home))
        return root, work, home

    return fresh


@pytest.mark.parametrize("args", CORPUS["command_lines"], ids=lambda a: " ".join(a).replace("\n", "\\n"))
def test_the_corpus_command_lines_hold_the_invariant(tree, args):
    root, work, home = tree()
    check_run(root, work, home, args)


def _fuzz(tree, args: list[str]) -> None:
    root, work, home = tree()
    try:
        code = check_run(root, work, home, args)
        event(f"{' '.join(args[:2] if args[0] in ('data', 'import', 'convert') else args[:1])}: exit {code}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@settings(settings.get_profile("cli-fuzz"))
@given(args=COMMAND_LINES)
def test_generated_command_lines_hold_the_invariant(tree, args):
    _fuzz(tree, args)


@pytest.mark.slow
@settings(settings.get_profile("cli-fuzz-thorough"))
@given(args=COMMAND_LINES)
def test_generated_command_lines_hold_the_invariant_thoroughly(tree, args):
    _fuzz(tree, args)
