"""A component's `[program:x]` section as supervisord 4.3 itself reads and starts it.

supervisord expands `%(name)s` in every value (a literal % is doubled), splits `command=` with
`shlex.split` (supervisor/process.py get_execv_args) and `environment=` with a non-POSIX `shlex.shlex`
whose tokens are stripped of quote characters (supervisor/datatypes.py dict_of_key_value_pairs), so a
value holding a quote cannot be written there. Whatever characters a project path or a setting holds,
the process must get exactly the argv, environment, directory and log file the Program names.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mlops_cli.platform.supervisor import Program

AWKWARD = ["plain", "two words", "it's", 'say "hi"', "100%", "%(here)s", "a,b", "both ' and \"", '"quoted"', "back\\slash"]
SHOW = "import json, os, sys; print(json.dumps([sys.argv[1:], os.getcwd(), {k: os.environ.get(k) for k in ('MLOPS_CONFIG', 'SETTING')}]))"


def _as_supervisord_reads_it(program: Program):
    from supervisor.options import ServerOptions, UnhosedConfigParser

    parser = UnhosedConfigParser()
    parser.read_string(program.section())
    options = ServerOptions()
    options.here = "/nowhere"
    (config,) = options.processes_from_section(parser, f"program:{program.name}", program.name)
    return config


@pytest.mark.parametrize("value", AWKWARD)
def test_the_process_gets_exactly_what_the_program_names(tmp_path, value):
    where = tmp_path / f"project {value.replace('/', '_')}"
    where.mkdir()
    env = {"MLOPS_CONFIG": str(where / "mlops.toml"), "SETTING": value}
    program = Program("gateway", [sys.executable, "-c", SHOW, value, str(where)], where / "gateway.log", where, env=env)
    config = _as_supervisord_reads_it(program)
    assert config.directory == str(where) and config.stdout_logfile == str(where / "gateway.log")
    # what supervisord's child does: execve(argv, os.environ + environment) in directory
    started = subprocess.run(shlex.split(config.command), cwd=config.directory, capture_output=True, text=True,
                             env={**os.environ, **(config.environment or {})}, timeout=60)
    assert started.returncode == 0, started.stderr
    argv, cwd, seen = json.loads(started.stdout)
    assert argv == [value, str(where)] and cwd == str(where) and seen == env


def test_a_changed_environment_is_told_from_any_other_change():
    from mlops_cli.platform.supervisor import without_environment

    base = Program("gateway", ["/usr/bin/python3", "-m", "gw", "--port", "8000"], Path("/l/gw.log"), Path("/p"),
                   env={"MLOPS_GATEWAY_PASSWORD": "a b=c", "MLOPS_CONFIG": "/p/mlops.toml"})
    new_password = replace(base, env={**base.env, "MLOPS_GATEWAY_PASSWORD": "other"})
    new_port = replace(base, cmd=[*base.cmd[:-1], "8001"])
    assert base.section() != new_password.section()
    assert without_environment(base.section()) == without_environment(new_password.section())
    assert without_environment(base.section()) != without_environment(new_port.section())
    assert without_environment(base.section()) == without_environment(replace(base, env={}).section())
