"""searchers/ is a client of the compiler: it uses only public names of rspnet_zoo.

An AST scan of every searchers module: no ``from rspnet_zoo... import _x``, no private module
(``rspnet_zoo._x``), and no ``obj._x`` attribute read on anything but ``self``. Run as a script it
prints the rspnet_zoo names each searchers module imports (the import graph the seam consists of):

    python tests/test_searchers_public_api.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SEARCHERS = Path(__file__).resolve().parents[1] / "searchers"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def scan(file: Path) -> tuple[list[str], list[str]]:
    """(rspnet_zoo names imported, private uses found) of one module."""
    imported, private = [], []
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        where = f"{file.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "rspnet_zoo":
            parts = node.module.split(".")
            for alias in node.names:
                imported.append(f"{node.module}.{alias.name}")
                if _private(alias.name) or any(_private(p) for p in parts):
                    private.append(f"{where}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "rspnet_zoo":
                    imported.append(alias.name)
                    if any(_private(p) for p in alias.name.split(".")):
                        private.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                private.append(f"{where}: {ast.unparse(node)}")
    return imported, private


def test_searchers_use_only_public_names_of_rspnet_zoo():
    files = sorted(SEARCHERS.rglob("*.py"))
    assert len(files) > 5  # the scan sees the package
    found = [use for f in files for use in scan(f)[1]]
    assert found == []


def test_the_scan_catches_private_imports_and_attributes(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from rspnet_zoo.spec.plan import _partial_widths, lower\nimport rspnet_zoo._x\ny = net._traits\n")
    imported, private = scan(bad)
    assert "rspnet_zoo.spec.plan.lower" in imported
    assert len(private) == 3


if __name__ == "__main__":
    failures = 0
    for f in sorted(SEARCHERS.glob("*.py")):
        names, uses = scan(f)
        print(f"searchers/{f.name}: {', '.join(sorted(set(names))) or '-'}")
        for use in uses:
            print(f"  PRIVATE {use}")
        failures += len(uses)
    print(f"{failures} private uses")
    sys.exit(1 if failures else 0)
