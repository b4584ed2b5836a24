"""Which third-party modules an image's entrypoint can import: every import statement (function-level
ones included) of the entrypoint and of each of our modules it reaches, followed through our packages."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

OURS = ("mlops_cli", "models", "charts", "stacks")


def module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                stem = ".".join(parts + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.add(stem)
            if stem.split(".")[0] in OURS:
                found.update(f"{stem}.{alias.name}" for alias in node.names)
    return found


def reachable(root: Path, entrypoint: str) -> tuple[set[str], set[str]]:
    """(our modules reached, third-party modules imported) starting at `entrypoint`."""
    ours: set[str] = set()
    third: set[str] = set()
    todo = [entrypoint]
    while todo:
        name = todo.pop()
        if name in ours:
            continue
        path = module_file(root, name)
        if path is None:
            continue
        ours.add(name)
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
        for imported in _imports(path, name):
            top = imported.split(".")[0]
            if top in OURS:
                todo.append(imported)
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                third.add(imported)
    return ours, third
