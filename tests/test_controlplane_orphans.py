"""Issue 22: a control-plane program dies with the test process that started it, even one killed by SIGKILL.

The programs run behind `unshare` (tests/controlplane_programs.py pod_wrap): a pod with a network of its own
runs unshare -> sh -> tests/pod_network.py (inside) -> the program, plus a relay to the API server outside.
PR_SET_PDEATHSIG is per process: the one set by the test on `unshare` kills unshare, `--kill-child` kills
its child, and nothing reached the program the relay started (seen: knative-controller and -autoscaler
left with ppid 1 after a killed pytest). Here the "program" is sleep(1) with an argument no other
process has, started exactly as a pod's program is; no control-plane binary is needed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from tests.support import REPO

PARENT = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from tests.controlplane import ControlPlane
    from tests.controlplane_certs import Authority
    from tests.controlplane_programs import pod_wrap

    work, bin_dir, marker, own = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "own"
    plane = ControlPlane(workdir=work, bin=bin_dir)
    (work / "pki").mkdir()
    plane.ca, plane.port, plane.pods = Authority(work / "pki"), 1, work / "pods"
    plane.pods.mkdir()
    wrap = pod_wrap(plane, "victim", "default", work / "account", plane.pods / "10.244.0.10" if own else None)
    plane.start("victim", [marker], program="sleep", wrap=wrap)
    print("started", flush=True)
    time.sleep(600)
''')


def _pids_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def _kill_parent_then_survivors(tmp_path: Path, own: str) -> list[int]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sleep").symlink_to("/bin/sleep")
    marker = f"{1000 + uuid.uuid4().int % 9000}.{uuid.uuid4().int % 10**6:06d}"  # sleep's argument: seconds
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path), str(bin_dir), marker, own], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert parent.stdout.readline().strip() == "started", parent.stderr.read()
        deadline = time.monotonic() + 10
        while not any(Path(f"/proc/{p}/exe").resolve().name == "sleep" for p in _pids_with(marker)):
            assert time.monotonic() < deadline, "the program did not start"
            time.sleep(0.05)
        workdir_procs = _pids_with(str(tmp_path))
        assert workdir_procs  # unshare, the relays: each names the workdir
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while (left := sorted(set(_pids_with(marker) + _pids_with(str(tmp_path))))) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:  # never leave one behind, whatever the verdict
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def test_a_pod_program_in_its_own_network_dies_with_the_killed_test(tmp_path):
    assert _kill_parent_then_survivors(tmp_path, "own") == []


def test_a_pod_program_on_the_host_network_dies_with_the_killed_test(tmp_path):
    assert _kill_parent_then_survivors(tmp_path, "host") == []
