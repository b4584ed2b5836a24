"""The test suite's own house rules (issue 16): fixtures come from conftest.py through pytest, never
by import; helpers live in plain support modules; nothing is imported only for its side effect."""

from __future__ import annotations

import re

from .import_graph import imported_modules
from .support import REPO

TESTS = REPO / "tests"


def test_no_test_module_imports_conftest():
    offenders = sorted(p.name for p in TESTS.rglob("*.py")
                       if any(module.split(".")[-1] == "conftest" for module in imported_modules(p)))
    assert offenders == []


def test_no_test_module_imports_another_test_module():
    # shared helpers live in support modules: a test module imported by another is collected once, but its
    # fixtures and module-level set-up then run where nobody looks for them
    offenders = {p.name: sorted(m for m in imported_modules(p) if m.startswith("tests.") and
                                m.rpartition(".")[2].startswith("test_") and not m.endswith(f".{p.stem}"))
                 for p in TESTS.rglob("*.py")}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_fixture_is_imported_for_its_side_effect():
    # an unused-import waiver is how a fixture gets imported by hand
    marker = "noqa: " + "F401"
    offenders = sorted(p.name for p in TESTS.rglob("*.py") if marker in p.read_text())
    assert offenders == []


def test_repo_is_defined_once():
    defined = sorted(p.name for p in TESTS.rglob("*.py") if re.search(r"^REPO\s*=", p.read_text(), re.M))
    assert defined == ["support.py"]


def test_the_conftest_check_sees_every_spelling(tmp_path):
    # the checker must see what it is meant to catch, or the test above proves nothing
    (tmp_path / "tests").mkdir()
    for i, line in enumerate(("from . import conftest", "from .conftest import project", "import tests.conftest",
                              "from tests.conftest import cli")):
        path = tmp_path / "tests" / f"test_{i}.py"
        path.write_text(f"def test():\n    {line}\n")
        assert "tests.conftest" in imported_modules(path, root=tmp_path), line
