"""The house's layers, as data: BENEATH names, for each package, the packages directly beneath it. A package
may import what lies beneath it, directly or further down, and nothing else: no arrow points up, and there
is no import circle between modules or between packages. Every import statement counts, function-level
ones included (import_graph reads them all). No module is longer than MAX_LINES."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .import_graph import PACKAGES, circles, imported_modules, module_graph, module_name, package_graph, package_of
from .support import REPO

# Bottom first. Read a line as "X rests on Y": X may import Y and whatever Y may import.
BENEATH: dict[str, tuple[str, ...]] = {
    "mlops_cli": (),                                        # the version
    "mlops_cli.common": (),                                 # errors, atomic files, checks, progress, text policy...
    "mlops_cli.config": ("mlops_cli.common",),
    "models": ("mlops_cli.common",),                        # shipped in the predictor image
    "mlops_cli.adapters": ("mlops_cli.config", "models"),   # MLflow, DVC, Kubernetes API, Pulumi, AWS...
    "mlops_cli.data": ("mlops_cli.adapters",),
    "mlops_cli.training": ("mlops_cli.data",),
    "mlops_cli.registry": ("mlops_cli.training",),
    "mlops_cli.monitoring": ("mlops_cli.registry",),
    "mlops_cli.platform": ("mlops_cli.data",),              # the local processes, doctor, batch scoring
    "charts": ("mlops_cli", "mlops_cli.registry"),          # Kubernetes objects
    "mlops_cli.cloud": ("charts",),                         # EKS versions, capacity, cost, images
    "stacks": ("mlops_cli.cloud",),                         # the Pulumi program
    "mlops_cli.services": ("mlops_cli.monitoring", "mlops_cli.platform"),
    "mlops_cli.targets": ("mlops_cli.services", "stacks"),
    "mlops_cli.loop": ("mlops_cli.targets",),               # feedback -> retrain -> gate -> canary -> promote
    "mlops_cli.cli": ("mlops_cli.loop",),
    "mlops_cli.__main__": ("mlops_cli.cli",),
}
MAX_LINES = 400
CONCRETE_TARGETS = {"mlops_cli.targets.local", "mlops_cli.targets.kubernetes", "mlops_cli.targets.eks"}


def may_import(package: str, beneath: dict[str, tuple[str, ...]] = BENEATH) -> set[str]:
    """Everything beneath `package`, directly or further down."""
    seen: set[str] = set()
    todo = list(beneath[package])
    while todo:
        below = todo.pop()
        if below not in seen:
            seen.add(below)
            todo.extend(beneath.get(below, ()))
    return seen


def upward(graph: dict[str, set[str]], beneath: dict[str, tuple[str, ...]] = BENEATH) -> list[str]:
    """Every import from a package to one not beneath it."""
    return sorted(f"{module} -> {imported}" for module, found in graph.items() for imported in found
                  if package_of(imported) != package_of(module)
                  and package_of(imported) not in may_import(package_of(module), beneath))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return module_graph()


def numbers(graph: dict[str, set[str]]) -> str:
    lines = {module: len((REPO / module_file_path(module)).read_text().splitlines()) for module in graph}
    largest = max(lines, key=lines.get)
    packages = package_graph(graph)
    return (f"import graph of {', '.join(PACKAGES)}: {len(graph)} modules, {sum(map(len, graph.values()))} edges, "
            f"{len(packages)} packages, {sum(map(len, packages.values()))} package edges; "
            f"largest module {largest} ({lines[largest]} lines)")


def module_file_path(module: str) -> Path:
    base = Path(*module.split("."))
    return base.with_suffix(".py") if (REPO / base.with_suffix(".py")).is_file() else base / "__init__.py"


def test_the_graph_numbers(graph):
    summary = numbers(graph)
    print(summary)
    assert len(graph) > 100, summary


def test_layers_are_a_hierarchy():
    assert [p for p in BENEATH if p in may_import(p)] == []  # a circle in the data would make "up" meaningless
    assert sorted(b for below in BENEATH.values() for b in below if b not in BENEATH) == []


def test_every_package_has_a_place(graph):
    assert sorted({package_of(m) for m in graph} - set(BENEATH)) == []
    assert sorted(set(BENEATH) - {package_of(m) for m in graph}) == []


def test_no_import_points_up(graph):
    assert upward(graph) == [], numbers(graph)


def test_no_import_circle_between_modules(graph):
    assert circles(graph) == [], numbers(graph)


def test_no_import_circle_between_packages(graph):
    assert circles(package_graph(graph)) == [], numbers(graph)


def test_no_module_over_the_limit(graph):
    long = {m: n for m in graph if (n := len((REPO / module_file_path(m)).read_text().splitlines())) > MAX_LINES}
    assert long == {}, numbers(graph)


def test_each_package_says_what_it_is_for_and_what_it_may_import():
    for init in sorted(p for package in PACKAGES for p in (REPO / package).rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert 2 <= len(doc.splitlines()) <= 3, f"{init.relative_to(REPO)}: {doc!r}"
        assert "import" in doc.lower(), f"{init.relative_to(REPO)} says nothing of what it may import"


def test_the_checks_catch_what_they_are_for():
    # the checkers must see what they are meant to catch, or the tests above prove nothing
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    beneath = {"models": (), "mlops_cli.common": ("models",)}
    assert upward({"models.x": {"mlops_cli.common.y"}, "mlops_cli.common.y": {"models.x"}}, beneath) == \
        ["models.x -> mlops_cli.common.y"]


def test_imported_modules_sees_relative_and_function_level_imports():
    path = REPO / "mlops_cli" / "cli" / "commands_platform.py"
    assert {"mlops_cli.cli.state", "mlops_cli.targets.get_target", "mlops_cli.cli.render"} <= imported_modules(path)
    # get_target imports each concrete target inside the function
    assert CONCRETE_TARGETS <= imported_modules(REPO / "mlops_cli" / "targets" / "__init__.py")


def test_target_interface_imports_no_target():
    assert imported_modules(REPO / "mlops_cli" / "targets" / "base.py") & CONCRETE_TARGETS == set()


def sources(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if p.name != "__main__.py")


PROBE = """
import importlib, json, sys
failed = {}
for name in NAMES:
    # forget our own modules (not the third-party ones: they are slow to import and not ours to test)
    for loaded in [m for m in sys.modules if m.split(".")[0] in PACKAGES]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failed))
"""


def test_every_module_imports_on_its_own():
    names = [module_name(p) for package in PACKAGES for p in sources(package)]
    assert len(names) > 50
    code = f"NAMES = {names!r}\nPACKAGES = {PACKAGES!r}\n" + PROBE
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}
