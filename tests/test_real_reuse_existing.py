"""Issue 22 item 5: `mlops up --reuse-existing` onto components someone else installed still applies what
is ours in those steps: the edge's Secret, Issuer, Certificate, GatewayClass, Gateway, routes and
SecurityPolicy on a foreign Envoy Gateway, our settings in a foreign Knative's `config-network` and
`config-features` and a foreign KServe's `inferenceservice-config`. Against the REAL API server.

"Someone else's cluster" is its own control plane (module-scoped, no scheduler): the real release files
(tests/upstream_files.py) applied by another field manager, as `kubectl apply --server-side` or helm
would, minus what needs a running pod (admission webhook configurations, Jobs). Only the steps whose
Deployments need no running pod are run (`up` would wait for the rest to roll out; no pod runs here).
"""

from __future__ import annotations

import json

import pytest

from tests.controlplane_kserve import cluster_of
from tests.upstream_bundle import build_bundle, bundle_documents, kubernetes_toml

THEIRS = "helm"   # the other installer's field manager
FOREIGN = ("cert-manager", "knative-crds", "knative-core", "kourier", "kserve", "envoy-gateway")
NO_POD_HERE = {"Job", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
STEPS_RUN = {"namespace", "cert-manager", "knative", "kserve", "kserve-runtimes", "edge"}
NS = "reuse"


def _apply_as(cluster, obj, manager):
    obj = cluster.normalise(obj)
    cluster.request("PATCH", cluster.path(obj), query=[("fieldManager", manager), ("force", "true")], body=obj,
                    content_type="application/apply-patch+yaml")


@pytest.fixture(scope="module")
def foreign_cluster(tmp_path_factory):
    """A control plane on which another installer put cert-manager, Knative + Kourier, KServe, Envoy Gateway."""
    import time

    from tests.controlplane import ControlPlane, ControlPlaneMissing

    try:
        with ControlPlane.running(tmp_path_factory.mktemp("foreign"), scheduler=False) as plane:
            cluster = cluster_of(plane)
            docs = bundle_documents()
            objects = [o for key in FOREIGN for o in docs[key] if o["kind"] not in NO_POD_HERE]
            objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kserve"}})  # its installer's
            crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
            for crd in crds:
                cluster.learn(crd)
                _apply_as(cluster, crd, THEIRS)
            for crd in crds:
                cluster.wait_ready(crd, deadline=time.monotonic() + 120)
            for obj in sorted((o for o in objects if o["kind"] != "CustomResourceDefinition"), key=lambda o: o["kind"] != "Namespace"):
                _apply_as(cluster, obj, THEIRS)
            yield plane
    except ControlPlaneMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def reuse_project(project, foreign_cluster, monkeypatch):
    from charts import platform

    pins = build_bundle(project / "bundle")
    (project / "mlops.toml").write_text('[project]\nname = "t"\n' + kubernetes_toml(
        project / "bundle", pins, foreign_cluster.kubeconfig, namespace=NS, step_timeout_s=60.0))
    real = platform.platform_steps
    monkeypatch.setattr(platform, "platform_steps", lambda *a, **k: [s for s in real(*a, **k) if s.key in STEPS_RUN])
    return cluster_of(foreign_cluster, NS)


SETTINGS = (("knative-serving", "config-network"), ("knative-serving", "config-features"), ("knative-serving", "config-observability"),
            ("kserve", "inferenceservice-config"))


def _parsed(data):
    """ConfigMap data with KServe's JSON documents parsed (we write them back re-indented)."""
    def value(text):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return {k: value(v) for k, v in data.items()}


def _managers(live):
    return {m["manager"] for m in live["metadata"].get("managedFields") or []}


def _config_map(cluster, namespace, name):
    return cluster.get({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}})


def test_reuse_existing_still_applies_our_objects_and_settings(cli, reuse_project):
    from mlops_cli.config.loading import load_config
    from mlops_cli.targets.kubernetes_ownership import is_ours

    from charts import edge, knative

    cluster = reuse_project
    theirs = {name: _config_map(cluster, ns, name)["data"] for ns, name in SETTINGS}
    refused = cli("up", "--target", "kubernetes")
    assert refused.exit_code == 2 and "--reuse-existing" in refused.stderr, refused.stderr

    result = cli("--json", "up", "--target", "kubernetes", "--reuse-existing")
    assert result.exit_code == 0, result.stderr
    steps = {s["name"]: s for s in json.loads(result.stdout)["steps"]}
    for title in ("1. cert-manager", "2. Knative Serving + Kourier", "3. KServe", "4. Envoy Gateway: HTTPS + basic auth"):
        assert steps[title]["action"] == "reused", steps[title]

    ours = edge.own_objects(load_config(), None)  # the edge step's Step.own
    kinds = {o["kind"] for o in ours}
    assert {"Secret", "Issuer", "Certificate", "GatewayClass", "Gateway", "HTTPRoute", "SecurityPolicy"} <= kinds, kinds
    for obj in ours:  # ours, applied onto the foreign Envoy Gateway (before the fix: none of them)
        live = cluster.get(obj)
        assert live is not None and is_ours(live), f"{obj['kind']} {obj['metadata']['name']} missing or not ours"

    network = _config_map(cluster, "knative-serving", "config-network")
    assert network["data"]["ingress-class"] == knative.KOURIER_CLASS
    features = _config_map(cluster, "knative-serving", "config-features")
    assert features["data"]["kubernetes.podspec-affinity"] == "enabled"  # models on MLflow's RWO volume (default)
    observability = _config_map(cluster, "knative-serving", "config-observability")
    assert observability["data"]["request-metrics-protocol"] == "prometheus"  # queue-proxy's metrics (item 7)
    isvc_config = _config_map(cluster, "kserve", "inferenceservice-config")
    ingress = json.loads(isvc_config["data"]["ingress"])
    assert ingress["disableIstioVirtualHost"] is True and ingress["localGatewayService"] == knative.KOURIER_INTERNAL
    for live in (network, features, observability, isvc_config):  # set as a separate manager: the ConfigMap stays theirs
        assert "mlops-settings" in _managers(live) and THEIRS in _managers(live) and not is_ours(live), _managers(live)
    controller = cluster.get({"apiVersion": "apps/v1", "kind": "Deployment",
                              "metadata": {"name": "envoy-gateway", "namespace": edge.CONTROLLER_NAMESPACE}})
    assert THEIRS in _managers(controller) and not is_ours(controller), _managers(controller)  # their install untouched

    again = cli("--json", "up", "--target", "kubernetes", "--reuse-existing")
    assert again.exit_code == 0, again.stderr
    changed = [s for s in json.loads(again.stdout)["steps"] if s["action"] not in ("unchanged", "reused")]
    assert changed == [], changed

    down = cli("down", "--target", "kubernetes", "--yes")
    assert down.exit_code == 0, down.stderr
    assert all(cluster.get(o) is None for o in ours)
    assert _config_map(cluster, "knative-serving", "config-network") is not None  # theirs: left
    assert cluster.get(controller) is not None
    # ... as it was before `up`: their values back, our field manager gone (before: ours stayed in all three)
    for ns, name in SETTINGS:
        live = _config_map(cluster, ns, name)
        assert _parsed(live["data"]) == _parsed(theirs[name]), name
        assert "mlops-settings" not in _managers(live) and THEIRS in _managers(live), (name, _managers(live))
    assert _config_map(cluster, NS, "mlops-reused-settings") is None


def test_down_leaves_a_value_they_changed_after_up(cli, reuse_project):
    """Their own change to a key we set, made after `up`, is theirs: `down` does not put the old value over it."""
    cluster = reuse_project
    assert cli("up", "--target", "kubernetes", "--reuse-existing").exit_code == 0
    _apply_as(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config-network", "namespace": "knative-serving"},
                        "data": {"ingress-class": "their.ingress.networking.knative.dev"}}, "their-admin")
    assert cli("down", "--target", "kubernetes", "--yes").exit_code == 0
    network = _config_map(cluster, "knative-serving", "config-network")
    assert network["data"]["ingress-class"] == "their.ingress.networking.knative.dev"
    assert "mlops-settings" not in _managers(network), _managers(network)
