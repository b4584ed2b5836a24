"""Issue 22 item 4: `mlops down` deletes our Gateway API objects and waits until Envoy Gateway's controller
has removed its finalizer from our GatewayClass, and only then deletes the controller. Against the REAL API
server (finalizer semantics) and Envoy Gateway's REAL controller (tests/controlplane_envoy_gateway.py),
which adds `gateway-exists-finalizer.gateway.networking.k8s.io` to a GatewayClass that a Gateway uses and
removes it when none does (envoyproxy/gateway v1.8.3 internal/provider/kubernetes/controller.go,
addFinalizer/removeFinalizer).

The controller runs as a process, not as the pod of its Deployment; what a kubelet would do when that
Deployment is deleted (its pod stops) is done here: the process is killed the moment the Deployment is
gone. Deleting it before the GatewayClass is gone then leaves the finalizer for good, as on a cluster.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.controlplane_kserve import cluster_of
from tests.upstream_bundle import build_bundle, kubernetes_toml

FINALIZER = "gateway-exists-finalizer.gateway.networking.k8s.io"
NS = "edge-down"
NOT_SERVED_HERE = {"Issuer", "Certificate"}  # cert-manager's kinds: not installed in this test


@pytest.fixture
def edge_project(project, control_plane, monkeypatch):
    from charts import platform

    pins = build_bundle(project / "bundle")
    (project / "mlops.toml").write_text('[project]\nname = "t"\n' + kubernetes_toml(
        project / "bundle", pins, control_plane.kubeconfig, namespace=NS, step_timeout_s=10.0))
    real = platform.platform_steps
    monkeypatch.setattr(platform, "platform_steps", lambda *a, **k: [s for s in real(*a, **k) if s.key == "edge"])
    return project


def _watch_deployment_then_kill(cluster, deployment, proc, seen):
    """The kubelet's part: when the controller's Deployment is gone, its pod (our process) stops."""
    while proc.popen.poll() is None:
        if cluster.get(deployment) is None:
            seen["deployment_gone"] = time.monotonic()
            proc.popen.kill()
            return
        time.sleep(0.05)


def test_down_keeps_envoy_gateway_until_it_has_released_the_gateway_class(cli, control_plane, edge_project):
    """Someone else's Gateway still uses our GatewayClass, so the real controller keeps its finalizer: `down`
    must stop with that named and the controller still running (before the fix it deleted the controller in
    the same stage, and the finalizer stayed for good); once that Gateway is gone, `down` completes."""
    from charts.platform import namespace, platform_steps
    from charts.secrets import GatewayCredentials, PlatformSecrets
    from mlops_cli.config.loading import load_config

    from tests.controlplane_envoy_gateway import envoy_gateway_running

    config = load_config()
    creds = GatewayCredentials("user", "secret-password")
    (step,) = platform_steps(config, PlatformSecrets(gateway=creds, s3=None, admin=creds))
    own = {id(o) for o in step.own}
    install = [o for o in step.objects if id(o) not in own]
    cluster = cluster_of(control_plane, NS)
    with envoy_gateway_running(control_plane, cluster, install) as proc:
        cluster.apply(namespace(config))
        for obj in step.own:  # as `up` applies them
            if obj["kind"] not in NOT_SERVED_HERE:
                cluster.apply(obj)
        gateway_class = next(o for o in step.own if o["kind"] == "GatewayClass")
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "edge-down-other"}})
        other = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                 "metadata": {"name": "other", "namespace": "edge-down-other"},
                 "spec": {"gatewayClassName": gateway_class["metadata"]["name"],
                          "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}}
        cluster.apply(other)

        deadline = time.monotonic() + 60
        while FINALIZER not in (cluster.get(gateway_class)["metadata"].get("finalizers") or []):  # the controller's decision
            assert time.monotonic() < deadline and proc.popen.poll() is None, proc.tail()
            time.sleep(0.2)

        deployment = next(o for o in install if o["kind"] == "Deployment" and o["metadata"]["name"] == "envoy-gateway")
        seen: dict[str, float] = {}
        watcher = threading.Thread(target=_watch_deployment_then_kill, args=(cluster, deployment, proc, seen), daemon=True)
        watcher.start()
        stuck = cli("down", "--target", "kubernetes", "--yes")
        assert stuck.exit_code != 0 and f"GatewayClass {gateway_class['metadata']['name']}" in stuck.stderr, stuck.stderr
        assert FINALIZER in stuck.stderr, stuck.stderr
        # before the fix: the controller's Deployment was deleted in the same stage, its pod gone
        assert cluster.get(deployment) is not None and proc.popen.poll() is None, seen

        cluster.delete(other)  # the user removes what holds it, as the message says; the controller then releases it
        done = cli("down", "--target", "kubernetes", "--yes")
        watcher.join(10)
        assert done.exit_code == 0, done.stderr + "\n" + proc.tail()
        assert cluster.get(gateway_class) is None
        assert "deployment_gone" in seen  # and only then the controller
