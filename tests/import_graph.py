"""Our modules' imports, read from their source: every import statement (function-level ones included)
with relative imports made absolute. The layering tests check them; the image tests follow them from an
entrypoint through our packages to the third-party modules an image must carry."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from .support import REPO

PACKAGES = ("mlops_cli", "models", "charts", "stacks")  # what the project ships
FIRST_PARTY = (*PACKAGES, "tests")


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, root: Path = REPO) -> set[str]:
    """Every module the file's import statements name, made absolute. `from pkg import x` names `pkg`,
    and `pkg.x` too when pkg is ours (`from . import registry` imports a module); a third-party `x` is
    left out, since only importing it would tell a submodule from a class."""
    module = module_name(path, root)
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
            if stem.split(".")[0] in FIRST_PARTY:
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
        for imported in imported_modules(path, root):
            top = imported.split(".")[0]
            if top in FIRST_PARTY:
                todo.append(imported)
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                third.add(imported)
    return ours, third
