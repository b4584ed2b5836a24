"""`mlops --help` must start instantly: no heavy module may be imported on that path."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "mlflow", "dvc", "kserve", "evidently", "pulumi", "kubernetes", "pandas",
         "numpy", "sklearn", "fastapi", "httpx")

PROBE = """
import json, sys
from mlops_cli.cli.app import main
try:
    main({args!r})
except SystemExit:
    pass
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))
sys.stderr.write("\\nHEAVY=" + json.dumps(heavy) + "\\n")
"""


def _loaded(args: list[str], cwd) -> list[str]:
    code = PROBE.format(args=args, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY=")][-1]
    return json.loads(line.removeprefix("HEAVY="))


def test_help_imports_nothing_heavy(project):
    assert _loaded(["--help"], project) == []


def test_every_subcommand_help_imports_nothing_heavy(project):
    from mlops_cli.cli.app import app
    import typer.main

    group = typer.main.get_command(app)
    for name in group.commands:
        assert _loaded([name, "--help"], project) == [], name


def test_config_show_imports_nothing_heavy(project):
    assert _loaded(["config", "show"], project) == []


def test_help_lists_commands(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("config", "data", "doctor", "version"):
        assert command in result.stdout
