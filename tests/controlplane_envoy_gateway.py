"""Envoy Gateway's REAL controller (`envoy-gateway server`, built by scripts/build-controlplane.sh from
github.com/envoyproxy/gateway at the version controlplane/envoy-gateway/go.mod pins) on the real control
plane, installed from its real install.yaml (tests/upstream_files.py release_manifest("envoy-gateway")).

As its release runs it: the certgen Job's command (`envoy-gateway certgen`, with the certgen
ServiceAccount's RBAC) makes the `envoy-gateway` Secret, and the controller runs with the envoy-gateway
ServiceAccount's token and the release's ConfigMap `envoy-gateway-config` as its config file.

Two things differ from a pod, both because it runs as a process on this host:
- its xDS and webhook servers read their certificate from the fixed path /certs (internal/xds/runner/
  runner.go xdsTLSCertFilepath, internal/provider/kubernetes/kubernetes.go webhookTLSCertDir: constants,
  no flag), where the pod mounts the Secret. The process gets its own mount namespace in which /certs is
  the Secret's files (`unshare`, a root of bind mounts, `chroot`); the host's / is not touched.
- it listens on fixed ports (xDS 0.0.0.0:18000, wasm 18002, health :8081, webhook 9443, admin 19000,
  metrics 19001), so two of them cannot run on one host at once; a port taken fails its start.
The certgen Job is not applied (its command runs here instead); the topology-injector webhook
configuration is, as released (certgen patches its caBundle; it calls the Service, which nothing here
routes, for pods/binding in envoy-gateway-system only, with failurePolicy Ignore).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from .controlplane import ControlPlane, ControlPlaneMissing, Process, _die_with_parent, bin_dir, service_account_kubeconfig

NAMESPACE = "envoy-gateway-system"
NOT_APPLIED = {"Job"}

# In a private mount namespace: a tmpfs root holding a bind of each entry of /, plus /certs; then chroot.
_ISOLATE = r'''
set -e
root=$1; certs=$2; shift 2
mount -t tmpfs tmpfs "$root"
for entry in /* /.[!.]*; do
  [ -e "$entry" ] || [ -L "$entry" ] || continue
  name=${entry#/}
  if [ -L "$entry" ]; then cp -P "$entry" "$root/$name"
  elif [ -d "$entry" ]; then mkdir "$root/$name"; mount --rbind "$entry" "$root/$name"
  else touch "$root/$name"; mount --bind "$entry" "$root/$name"; fi
done
mkdir "$root/certs"
mount --bind "$certs" "$root/certs"
exec chroot "$root" "$@"
'''


def _start_isolated(plane: ControlPlane, name: str, certs: Path, argv: list[str], env: dict[str, str]) -> Process:
    """Like ControlPlane.start, inside its own mount namespace where /certs is `certs`."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("`unshare` (util-linux) is needed to give envoy-gateway its /certs: install util-linux")
    root = plane.workdir / f"{name}-root"
    root.mkdir()
    user_ns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    command = [unshare, *user_ns, "--mount", "--propagation", "private", "sh", "-c", _ISOLATE, "sh",
               str(root), str(certs), *argv]
    log = plane.workdir / f"{name}.log"
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(plane.workdir)}
    with log.open("wb") as out:
        popen = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env={**base, **env}, cwd=plane.workdir, start_new_session=True,
                                 preexec_fn=_die_with_parent)
    proc = Process(name, popen, log, time.monotonic())
    plane.processes.append(proc)
    return proc


def _wait_http(proc: Process, url: str, timeout_s: float = 120.0) -> float:
    import urllib.error
    import urllib.request

    deadline = proc.started + timeout_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        with contextlib.suppress(urllib.error.URLError, OSError):
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return time.monotonic() - proc.started
        time.sleep(0.3)
    raise RuntimeError(f"{proc.name} not ready at {url} after {timeout_s:.0f}s:\n{proc.tail()}")


@contextlib.contextmanager
def envoy_gateway_running(plane: ControlPlane, cluster: Any, objects: list[dict[str, Any]]) -> Iterator[Process]:
    """install.yaml's `objects` applied as the release applies them (CRDs first), then certgen, then the
    controller; stopped on exit."""
    try:
        program = bin_dir(("envoy-gateway",)) / "envoy-gateway"
    except ControlPlaneMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    for crd in crds:
        cluster.learn(crd)
        cluster.apply(crd)
    for crd in crds:
        cluster.wait_ready(crd, deadline=time.monotonic() + 60)
    ns_first = sorted((o for o in objects if o["kind"] not in NOT_APPLIED and o["kind"] != "CustomResourceDefinition"),
                      key=lambda o: o["kind"] != "Namespace")
    for obj in ns_first:
        cluster.apply(obj)

    env = {"ENVOY_GATEWAY_NAMESPACE": NAMESPACE, "KUBERNETES_CLUSTER_DOMAIN": "cluster.local"}
    certgen_config = service_account_kubeconfig(plane, cluster, NAMESPACE, "eg-gateway-helm-certgen")
    done = subprocess.run([str(program), "certgen"], env={**env, "KUBECONFIG": str(certgen_config),
                                                          "HOME": str(plane.workdir)},
                          capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"envoy-gateway certgen failed:\n{done.stdout}\n{done.stderr}")
    secret = cluster.get({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "envoy-gateway", "namespace": NAMESPACE}})
    certs = plane.workdir / "envoy-gateway-certs"
    certs.mkdir()
    for key, value in secret["data"].items():
        (certs / key).write_bytes(base64.b64decode(value))
    config_map = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "envoy-gateway-config")
    config = plane.workdir / "envoy-gateway.yaml"
    config.write_text(config_map["data"]["envoy-gateway.yaml"])
    assert yaml.safe_load(config.read_text())["kind"] == "EnvoyGateway"

    kubeconfig = service_account_kubeconfig(plane, cluster, NAMESPACE, "envoy-gateway")
    proc = _start_isolated(plane, "envoy-gateway", certs, [str(program), "server", f"--config-path={config}"],
                           {**env, "KUBECONFIG": str(kubeconfig)})
    plane.timings["envoy-gateway ready (s)"] = _wait_http(proc, "http://127.0.0.1:8081/readyz")
    try:
        yield proc
    finally:
        proc.stop()
