"""The coverage gate: measured across subprocesses with our settings, enforced by `make test` (.ci/run),
and the threshold the README states is the one enforced."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib

from .support import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_readme_states_the_enforced_threshold():
    fail_under = PYPROJECT["tool"]["coverage"]["report"]["fail_under"]
    stated = re.search(r"coverage gate[^\n]*?(\d+(?:\.\d+)?)\s*%", (REPO / "README.md").read_text(), flags=re.I)
    assert stated, "README must state the coverage threshold"
    assert float(stated.group(1)) == float(fail_under)


def test_make_test_runs_the_suite_under_coverage_and_reports_against_the_gate():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "coverage run --parallel-mode -m pytest" in recipe and "coverage combine" in recipe and "coverage report" in recipe
    # the real-control-plane files, each in its own process, are part of the measured run
    assert "for f in tests/test_real_*.py; do $(BIN)/coverage run --parallel-mode -m pytest" in recipe
    # ... beside the rest of the suite, and a failure in either stream fails the run
    assert "& plane=$$!" in recipe and "wait $$plane; real=$$?" in recipe
    assert "test $$rest -eq 0 && test $$real -eq 0" in recipe
    assert "make test" in (REPO / ".ci" / "run").read_text()


def _project(tmp_path, fail_under: int):
    run_settings = PYPROJECT["tool"]["coverage"]["run"]
    (tmp_path / "service.py").write_text(textwrap.dedent("""
        def handled():
            return "in a subprocess"

        def never_called():
            x = 1
            return x
    """))
    (tmp_path / "main.py").write_text(textwrap.dedent("""
        import subprocess, sys
        subprocess.run([sys.executable, "-c", "import service; service.handled()"], check=True)
    """))
    patch = ", ".join(f'"{p}"' for p in run_settings["patch"])
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(f"""
        [tool.coverage.run]
        source = ["."]
        omit = ["main.py"]
        patch = [{patch}]
        sigterm = {str(run_settings["sigterm"]).lower()}
        [tool.coverage.report]
        fail_under = {fail_under}
    """))


def _coverage(tmp_path, *args):
    # Not measured by the suite's own coverage run (make test): that would start a second tracer.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    return subprocess.run([sys.executable, "-m", "coverage", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=env)


def test_code_run_only_in_a_subprocess_is_measured_and_the_gate_fails_under_threshold(tmp_path):
    _project(tmp_path, fail_under=90)
    assert _coverage(tmp_path, "run", "main.py").returncode == 0
    assert _coverage(tmp_path, "combine", "--quiet").returncode == 0
    total = _coverage(tmp_path, "report", "--format=total")
    # service.py has 5 statements; the subprocess ran 3 of them (def, def, return): 60%, not 0%.
    assert total.stdout.strip().splitlines()[0] == "60"
    assert total.returncode == 2 and "less than fail-under=90" in total.stdout


def test_the_gate_passes_at_or_above_threshold(tmp_path):
    _project(tmp_path, fail_under=60)
    _coverage(tmp_path, "run", "main.py")
    _coverage(tmp_path, "combine", "--quiet")
    assert _coverage(tmp_path, "report", "--format=total").returncode == 0
