"""The whole cluster flow through our CLI against the REAL control plane: `mlops up` (twice), `deploy`,
a canary, `--promote`, a bad canary and `--rollback`, `down`, `down --purge`.

The API server, etcd, controller-manager and scheduler, Knative Serving's controller, webhook and
autoscaler and KServe's manager with its webhooks are the real programs (tests/controlplane.py,
tests/controlplane_programs.py); every pod is created by the real ReplicaSet controller and admitted by the
real Pod Security admission at the level our namespaces declare, queue-proxy's included. Traffic is read
where Knative and KServe write it: the Route's status and the InferenceService's.

The narrowest seams, each where a program cannot run here (tests/controlplane_platform.py says more):
- kwok is the node: it marks pods Running and Ready, which is the kubelet's call (controlplane_kwok.py);
  model version 13 is the bad one, whose pods never get Ready (controlplane.BAD_VERSION);
- cert-manager: its CRDs are served, installed as someone else's cert-manager that `up --reuse-existing`
  reuses; the Secrets its Certificates ask for and the CA injection are the tests' (controlplane_certmanager.py);
- Kourier: a KIngress is marked Ready as Kourier's controller marks it once Envoy has the config
  (controlplane_kourier.py);
- storage: static PersistentVolumes of a default StorageClass.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.controlplane import BAD_VERSION
from tests.controlplane_deploy import NS, RouteTraffic, fake_registry
from tests.controlplane_deploy import cluster as _cluster
from tests.controlplane_deploy import revision_of as _revision_of


@pytest.fixture
def registry(monkeypatch):
    fake_registry(monkeypatch)


def test_up_twice_deploy_canary_promote_bad_canary_rollback_down_purge(control_plane, platform_project, cli, registry,
                                                                         monkeypatch):
    from mlops_cli.adapters.kube_objects import describe
    from mlops_cli.config.loading import load_config
    from mlops_cli.targets.kubernetes_ownership import is_ours

    config_path = str(platform_project / "mlops.toml")

    def run(*args, ok=True):
        result = cli("--config", config_path, "--json", *args)
        if ok:
            assert result.exit_code == 0, result.stderr + "\n" + "\n".join(control_plane.kubelet.errors[-5:])
        return result

    cluster = _cluster(control_plane)
    first = json.loads(run("up", "--target", "kubernetes", "--reuse-existing").stdout)
    steps = {s["name"]: s for s in first["steps"]}
    assert steps["1. cert-manager"]["action"] == "reused"  # someone else's (tests/controlplane_platform.py)
    # The generated password is shown once and lives only in the Secret (Envoy Gateway's basic auth reads
    # .htpasswd); Grafana's admin and the gateway's /admin have their own, never printed.
    secret = lambda name: {k: base64.b64decode(v).decode() for k, v in cluster.get(  # noqa: E731
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}})["data"].items()}
    assert secret("mlops-gateway-auth")["password"] == first["gateway_password"]
    assert secret("mlops-gateway-auth")[".htpasswd"].startswith("admin:{SHA}")
    admin = secret("mlops-admin-auth")["password"]
    assert len(admin) >= 20 and admin != first["gateway_password"] and admin not in json.dumps(first)
    second = json.loads(run("up", "--target", "kubernetes", "--reuse-existing").stdout)
    assert {s["action"] for s in second["steps"]} <= {"unchanged", "reused"}, \
        [s for s in second["steps"] if s["action"] not in {"unchanged", "reused"}]
    assert len(second["steps"]) == len(first["steps"]) and "gateway_password" not in second
    assert secret("mlops-admin-auth")["password"] == admin

    route = RouteTraffic(control_plane, "sentiment-predictor")
    route.start()
    assert json.loads(run("deploy", "--target", "kubernetes", "--version", "1").stdout)["traffic"] == "v1 100%"
    v1 = _revision_of(cluster, "1")
    pods = cluster.list_objects("v1", "Pod", NS, f"serving.knative.dev/revision={v1}")
    assert pods and [c["name"] for c in pods[0]["spec"]["containers"]] == ["kserve-container", "queue-proxy"]

    assert json.loads(run("deploy", "--target", "kubernetes", "--version", "2", "--canary", "20").stdout)["traffic"] \
        == "v1 80%, v2 20% (canary)"
    v2 = _revision_of(cluster, "2")
    assert route.samples[-1] == {v1: 80, v2: 20}, route.samples
    assert json.loads(run("deploy", "--target", "kubernetes", "--promote").stdout)["traffic"] == "v2 100%"

    monkeypatch.setenv("MLOPS_SERVING__READY_TIMEOUT_S", "20")
    bad = run("deploy", "--target", "kubernetes", "--version", BAD_VERSION, "--canary", "20", ok=False)
    assert bad.exit_code == 1 and "InferenceService mlops/sentiment" in bad.stderr, bad.stderr
    assert "[serving].ready_timeout_s" in bad.stderr and "Traceback" not in bad.stderr
    monkeypatch.delenv("MLOPS_SERVING__READY_TIMEOUT_S")
    rolled = json.loads(run("deploy", "--target", "kubernetes", "--rollback").stdout)
    assert rolled["traffic"] == "v2 100%" and rolled["model_version"] == "2", rolled
    route.done.set()
    route.join()
    bad_rev = _revision_of(cluster, BAD_VERSION)
    assert bad_rev and all(split.get(bad_rev, 0) == 0 for split in route.samples), route.samples

    run("down", "--target", "kubernetes")
    run("down", "--target", "kubernetes", "--purge", "--yes")
    config = load_config(config_path, env={})
    from charts.platform import platform_steps

    left = []
    for obj in (o for step in platform_steps(config, None) for o in step.objects):
        cluster.learn(obj)
        live = cluster.get(obj)
        if live is not None and (is_ours(live) or live["metadata"].get("finalizers")):
            left.append(describe(obj))
    assert left == [], left
    for name in ("mlops", "mlops-logs", "kserve", "knative-serving", "kourier-system"):
        assert cluster.get({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}) is None, name
