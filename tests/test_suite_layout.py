"""The test suite's own house rules (issue 16): fixtures come from conftest.py through pytest, never
by import; helpers live in plain support modules; nothing is imported only for its side effect."""

from __future__ import annotations

import ast
import re

from .support import REPO

TESTS = REPO / "tests"


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            yield (node.module or "", node.level)
        elif isinstance(node, ast.Import):
            yield from ((alias.name, 0) for alias in node.names)


def test_no_test_module_imports_conftest():
    offenders = sorted(p.name for p in TESTS.rglob("*.py")
                       if any(module.split(".")[-1] == "conftest" for module, _ in _imports(p)))
    assert offenders == []


def test_no_fixture_is_imported_for_its_side_effect():
    # an unused-import waiver is how a fixture gets imported by hand
    marker = "noqa: " + "F401"
    offenders = sorted(p.name for p in TESTS.rglob("*.py") if marker in p.read_text())
    assert offenders == []


def test_repo_is_defined_once():
    defined = sorted(p.name for p in TESTS.rglob("*.py") if re.search(r"^REPO\s*=", p.read_text(), re.M))
    assert defined == ["support.py"]
