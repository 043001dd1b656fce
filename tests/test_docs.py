"""The README and docs/ work as written.

Every ``bash`` and ``python`` block runs, page by page and in order, on a fresh zoo home from a folder outside
the checkout ("works as typed, from any folder"): ``rspnet-zoo`` lines through the CLI in this process,
``python -c`` lines and ``python`` blocks in fresh processes that import this tree. A block that cannot run
here says why on the line before it: ``<!-- not-run: REASON -->`` (a GPU, a data set, the network, minutes)
is never run, ``<!-- slow: REASON -->`` runs in the slow suite only. Every repository path and
``rspnet_zoo.``/``searchers.`` name a page cites exists, every relative link resolves, and the README's command
table has a row for every command of the CLI.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = ("bash", "python")
SHOWN = ("text", "json", "toml")  # shown, never run
MARK = re.compile(r"<!--\s*(not-run|slow):\s*(.*?)\s*-->")
EXPECTED_EXIT = re.compile(r"#\s*exit (\d+)\b")
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
TOP_FOLDERS = ("rspnet_zoo", "searchers", "genotypes", "schemas", "tests", "benchmarks", "docs", ".ci")
CITED_PATH = re.compile(rf"(?<![\w./$-])(?:{'|'.join(re.escape(f) for f in TOP_FOLDERS)})/[\w./*<>-]*")
CITED_NAME = re.compile(r"(?<![\w./-])(?:rspnet_zoo|searchers)(?:\.[A-Za-z_]\w*)+(?![\w/])")
FILE_SUFFIXES = ("json", "md", "py", "txt", "png")  # rspnet_zoo.json is a file name, not a module path
LINK = re.compile(r"\]\(([^)\s]+)\)")
TIMEOUT_S = 900


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence
    lang: str
    text: str
    mark: str | None  # "not-run", "slow" or None
    reason: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]
    exit_code: int


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = re.fullmatch(r"(\s*)```(\S*)\s*", lines[i])
        if not fence:
            i += 1
            continue
        indent, end = len(fence.group(1)), i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        above = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        mark = MARK.fullmatch(above)
        text = "\n".join(line[indent:] for line in lines[i + 1 : end]) + "\n"
        found.append(Block(page, i + 1, fence.group(2), text, *(mark.groups() if mark else (None, ""))))
        i = end + 1
    return found


def commands(block: Block) -> list[Command]:
    """The commands of a bash block: one a line (``\\`` continues it), ``&&`` chains them, ``NAME=value`` before
    a command sets its environment, and a trailing ``# exit N`` says the command is expected to exit with N."""
    logical, pending = [], ""
    for line in block.text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    found = []
    for line in logical:
        words = shlex.split(line, comments=True)
        if not words:
            continue
        expected = EXPECTED_EXIT.search(line.partition(" #")[1] + line.partition(" #")[2])
        chain = [[]]
        for word in words:
            chain.append([]) if word == "&&" else chain[-1].append(word)
        for k, argv in enumerate(chain):
            env = {}
            while argv and ENV_ASSIGNMENT.match(argv[0]):
                name, _, value = argv.pop(0).partition("=")
                env[name] = value
            last = k == len(chain) - 1
            found.append(Command(argv, env, int(expected.group(1)) if expected and last else 0))
    return found


def runnable(command: Command) -> bool:
    argv = command.argv
    return bool(argv) and (argv[0] == "rspnet-zoo" or (argv[0] == "python" and argv[1:2] == ["-c"] and len(argv) == 3))


ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]


def _pages_with(kinds: set[str | None]) -> list[Path]:
    return [p for p in PAGES if any(b.page == p and b.lang in RUN and b.mark in kinds for b in ALL_BLOCKS)]


def test_every_block_runs_or_says_why_not():
    assert len(PAGES) > 1 and (ROOT / "docs" / "extending.md") in PAGES
    for block in ALL_BLOCKS:
        assert block.lang in RUN + SHOWN, f"{block}: a code block needs a language, one of {RUN + SHOWN}"
        if block.mark is not None:
            assert block.lang in RUN, f"{block}: only bash and python blocks are run, so only they take a mark"
            assert len(block.reason) >= 8, f"{block}: say why the block is {block.mark}"
        if block.lang == "bash" and block.mark != "not-run":
            for command in commands(block):
                assert runnable(command), (
                    f"{block}: `{shlex.join(command.argv)}` is neither an rspnet-zoo command nor `python -c`; "
                    "mark the block <!-- not-run: REASON -->"
                )
        if block.lang == "bash":
            assert commands(block), f"{block}: an empty bash block"


def test_the_block_parser_reads_what_a_reader_would_type():
    block = Block(
        ROOT / "README.md",
        1,
        "bash",
        "A=1 rspnet-zoo list --json && rspnet-zoo diff a b  # exit 1: they differ\n"
        "rspnet-zoo show \\\n  rspnet_small\n# a comment\npython -c \"print('#')\"\n",
        None,
        "",
    )
    assert commands(block) == [
        Command(["rspnet-zoo", "list", "--json"], {"A": "1"}, 0),
        Command(["rspnet-zoo", "diff", "a", "b"], {}, 1),
        Command(["rspnet-zoo", "show", "rspnet_small"], {}, 0),
        Command(["python", "-c", "print('#')"], {}, 0),
    ]


def _subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def _run_python(args: list[str], where: str, work: Path, env: dict[str, str], expected: int = 0) -> None:
    result = subprocess.run(
        [sys.executable, *args], cwd=work, env=_subprocess_env(env), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert result.returncode == expected, f"{where}: exit {result.returncode}\n{result.stderr[-3000:]}"


def _run_cli(command: Command, where: str, run_cli, monkeypatch) -> None:
    threads = torch.get_num_threads()
    with monkeypatch.context() as m:
        for name, value in command.env.items():
            m.setenv(name, value)
        code, out, err = run_cli(*command.argv[1:])
    torch.set_num_threads(threads)  # a command's --threads stays with the command
    assert code == command.exit_code, f"{where}: `{shlex.join(command.argv)}` exited {code}\n{err[-3000:]}"


def run_page(page: Path, with_slow: bool, tmp_path: Path, run_cli, monkeypatch) -> None:
    """Every runnable block of ``page`` in order, in one working folder and one fresh zoo home, as a reader
    following the page would run them."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("PYTHONPATH", _subprocess_env({})["PYTHONPATH"])  # processes a command starts (--nproc)
    for block in blocks(page):
        if block.lang not in RUN or block.mark == "not-run" or (block.mark == "slow" and not with_slow):
            continue
        if block.lang == "python":
            _run_python(["-c", block.text], str(block), work, {})
            continue
        for command in commands(block):
            where = f"{block} `{shlex.join(command.argv)[:80]}`"
            if command.argv[0] == "python":
                _run_python(command.argv[1:], where, work, command.env, command.exit_code)
            else:
                _run_cli(command, where, run_cli, monkeypatch)


SLOW_PAGES = {"published-checkpoints.md"}  # a conversion round trip of seconds: `pytest -m slow`


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_PAGES else p for p in _pages_with({None})],
    ids=lambda p: p.name,
)
def test_page_runs_as_written(page, tmp_path, run_cli, monkeypatch):
    run_page(page, False, tmp_path, run_cli, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with({"slow"}), ids=lambda p: p.name)
def test_page_runs_as_written_with_its_slow_blocks(page, tmp_path, run_cli, monkeypatch):
    run_page(page, True, tmp_path, run_cli, monkeypatch)


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as e:  # not a module: an attribute of a shorter prefix, or nothing
            if e.name not in {".".join(parts[:j]) for j in range(1, i + 1)}:
                raise
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def cited(page: Path) -> tuple[set[str], set[str]]:
    """Repository paths and dotted names in the page's inline code and code blocks."""
    text = page.read_text(encoding="utf-8")
    spans = re.findall(r"`([^`\n]+)`", text) + [b.text for b in blocks(page)]
    paths = {m.rstrip(".") for s in spans for m in CITED_PATH.findall(s) if "<" not in m}
    names = {m for s in spans for m in CITED_NAME.findall(s) if m.rpartition(".")[2] not in FILE_SUFFIXES}
    return paths, names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_cited_paths_and_names_exist(page):
    paths, names = cited(page)
    missing = sorted(p for p in paths if not (list(ROOT.glob(p)) if "*" in p else (ROOT / p).exists()))
    assert not missing, f"{page.name} cites files that do not exist: {missing}"
    unresolved = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            unresolved.append(name)
    assert not unresolved, f"{page.name} cites names that do not resolve: {unresolved}"


def test_the_citation_check_catches_what_drifted(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "An op is one entry of `rspnet_zoo.spec.ops.OP_TRAITS` in `rspnet_zoo/spec/ops.py`, not of\n"
        "`rspnet_zoo.ops.OPDEFS` in `rspnet_zoo/op_defs.py`; `searchers/<method>/` is a pattern, "
        "`rspnet_zoo.json` a file.\n"
    )
    paths, names = cited(page)
    assert paths == {"rspnet_zoo/spec/ops.py", "rspnet_zoo/op_defs.py"}
    assert names == {"rspnet_zoo.spec.ops.OP_TRAITS", "rspnet_zoo.ops.OPDEFS"}
    assert _resolve("rspnet_zoo.spec.ops.OP_TRAITS") is not None
    assert _resolve("rspnet_zoo.GenotypeNet.forward_weighted") is not None
    with pytest.raises(AttributeError):
        _resolve("rspnet_zoo.spec.ops.OPDEFS")


def test_extending_cites_a_file_and_a_name_for_every_extension_point():
    text = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S))
    points = ("An op", "A head", "A search budget", "An importer or conversion family", "A data set")
    points += ("A CLI command", "A search method")
    assert set(points) <= set(sections)
    for point in points:
        paths, names = cited_text(sections[point])
        assert paths and names, f"docs/extending.md, '{point}': cite its files and its names"


def cited_text(text: str) -> tuple[set[str], set[str]]:
    spans = re.findall(r"`([^`\n]+)`", text)
    return {m for s in spans for m in CITED_PATH.findall(s)}, {m for s in spans for m in CITED_NAME.findall(s)}


@pytest.mark.parametrize("page", [*PAGES, ROOT / "CHANGELOG.md"], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (page.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{page.name} links to missing files: {broken}"


def test_the_readme_has_a_row_for_every_command():
    from rspnet_zoo.cli.app import command

    def leaves(cmd, path=()):
        subcommands = getattr(cmd, "commands", None)
        if not subcommands:
            yield " ".join(path)
            return
        for name, sub in subcommands.items():
            yield from leaves(sub, (*path, name))

    rows = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    missing = [c for c in leaves(command()) if not any(re.match(rf"\| `rspnet-zoo {c}( |`)", row) for row in rows)]
    assert not missing, f"the README's command table lacks {missing}"
