"""Our modules' imports, read from their source: every import statement (function-level ones included)
with relative imports made absolute. The layering tests check them as a graph of modules and of packages;
the image tests follow them from an entrypoint through our packages to the third-party modules an image
must carry."""

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


def package_of(module: str) -> str:
    """The part of the house a module belongs to: `mlops_cli.<package>` inside mlops_cli, else its top package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "mlops_cli" and len(parts) > 1 else parts[0]


def module_graph(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """module -> the modules of ours its import statements name. `from pkg import name` counts as an import
    of `pkg.name` when that is a module, else of `pkg` (a name defined in it). Only what a statement says
    counts: the parent packages Python runs first are not arrows of their own."""
    modules = {module_name(p, root): p for package in packages for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for imported in imported_modules(path, root):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                found.add(imported)
        graph[name] = found
    return graph


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {package_of(m): set() for m in graph}
    for module, imported in graph.items():
        out[package_of(module)].update(package_of(i) for i in imported if package_of(i) != package_of(module))
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan's, iterative): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found
