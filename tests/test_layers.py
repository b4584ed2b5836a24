"""The layers point one way: the core knows neither the CLI nor the targets, the target interface knows
none of its implementations, and every module imports on its own (no hidden import circle)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .import_graph import PACKAGES, imported_modules, module_name
from .support import REPO

CONCRETE_TARGETS = {"mlops_cli.targets.local", "mlops_cli.targets.kubernetes", "mlops_cli.targets.eks"}


def sources(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if p.name != "__main__.py")


def test_imported_modules_resolves_relative_imports():
    # the checker itself must see what it is meant to catch, or the tests below prove nothing
    path = REPO / "mlops_cli" / "cli" / "commands_platform.py"
    assert {"mlops_cli.cli.state", "mlops_cli.targets.get_target", "mlops_cli.cli.render"} <= imported_modules(path)


def test_core_imports_neither_targets_nor_cli():
    offenders = {module_name(p): sorted(m for m in imported_modules(p)
                                        if m.startswith(("mlops_cli.targets", "mlops_cli.cli")))
                 for p in sources("mlops_cli/core")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_target_interface_imports_no_target():
    assert imported_modules(REPO / "mlops_cli" / "targets" / "base.py") & CONCRETE_TARGETS == set()


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
