"""What we render, checked against the real upstream releases at the pinned versions (tests/upstream_files.py):
KServe's inferenceservice-config, Knative Serving's config-features; and the
gateway's probes against the real gateway app."""

from __future__ import annotations

import functools
import re

import pytest
import yaml

from tests.upstream_bundle import build_bundle, kubernetes_toml
from tests.upstream_files import documents, module_file, release_manifest



@functools.lru_cache(maxsize=None)
def upstream_docs(key: str) -> tuple[dict, ...]:
    """key: a release manifest of tests/upstream_files.py, or "knative-features" (config-features)."""
    if key == "knative-features":
        return tuple(documents(module_file("knative-serving", "config/core/configmaps/features.yaml")))
    return tuple(documents(release_manifest(key)))


@pytest.fixture
def config(project):
    from mlops_cli.config.loading import load_config

    pins = build_bundle(project / "bundle")
    (project / "mlops.toml").write_text('[project]\nname = "t"\n' + kubernetes_toml(project / "bundle", pins, namespace="ml-prod"))
    return load_config()


# --- point 1: the gateway's probes -----------------------------------------------------------------

def test_probes_are_separate_objects(config):
    from charts.objects import container

    c = container(config, "gateway", "g", "img", port=8080, probe_path="/ready", live_path="/alive")
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready" and c["livenessProbe"]["httpGet"]["path"] == "/alive"
    c["livenessProbe"]["httpGet"]["path"] = "/changed"  # the old builder shared one httpGet between both
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_gateway_is_ready_before_any_predictor_exists(config):
    """Ready = can serve or answer 503 cleanly: the rendered readiness path answers 200 on a real
    gateway whose predictor does not exist, while /predict answers a clean 503."""
    from fastapi.testclient import TestClient

    from charts import gateway
    from mlops_cli.services.gateway import GatewaySettings, create_app
    from mlops_cli.services.gateway_auth import BasicAuth
    from tests.support import free_port

    dep = gateway.objects(config)[0]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    ready, alive = c["readinessProbe"], c["livenessProbe"]
    assert ready is not alive and ready["httpGet"] is not alive["httpGet"]
    assert ready["httpGet"]["port"] == alive["httpGet"]["port"] == gateway.PORT
    settings = GatewaySettings(config, f"http://127.0.0.1:{free_port()}", "1", BasicAuth({"u": "p"}))
    with TestClient(create_app(settings)) as client:
        assert client.get(ready["httpGet"]["path"]).status_code == 200
        assert client.get(alive["httpGet"]["path"]).status_code == 200
        answer = client.post("/predict", json={"text": "fine"}, auth=("u", "p"))
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "predictor_unavailable"


# --- point 2: KServe configured for Kourier; one predictor address --------------------------------

def _real_kserve_config() -> dict:
    (cm,) = [d for d in upstream_docs("inferenceservice-config") if d["kind"] == "ConfigMap"]
    return cm


def test_kserve_config_patch_applies_to_the_real_configmap(config):
    import json

    from charts import kserve
    from charts.configmap_patch import apply_patches

    real = _real_kserve_config()
    assert json.loads(real["data"]["ingress"])["disableIstioVirtualHost"] is False  # what ships: Istio
    (patched,) = apply_patches([real], kserve.patches(config), "kserve v0.20.0")
    ingress = json.loads(patched["data"]["ingress"])
    assert ingress["disableIstioVirtualHost"] is True
    assert ingress["localGatewayService"] == "kourier-internal.kourier-system.svc.cluster.local"
    assert "istio" not in ingress["localGatewayService"]
    assert real["data"]["ingress"] != patched["data"]["ingress"]  # a new object; the input is untouched
    # every other setting of the release is kept as shipped
    assert {k: v for k, v in patched["data"].items() if k != "ingress"} == {k: v for k, v in real["data"].items() if k != "ingress"}


def test_rendered_kserve_step_carries_the_patch(config):
    import json

    from charts import kserve

    (cm,) = [o for o in kserve.objects(config) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "inferenceservice-config"]
    assert json.loads(cm["data"]["ingress"])["disableIstioVirtualHost"] is True


def test_patch_to_a_key_the_release_does_not_have_fails():
    from charts.configmap_patch import ConfigMapPatch, apply_patches
    from mlops_cli.common.errors import PreflightError

    real = _real_kserve_config()
    with pytest.raises(PreflightError, match="has no key disableIstioVirtualhost"):
        apply_patches([real], [ConfigMapPatch("kserve", "inferenceservice-config", {"disableIstioVirtualhost": True},
                                              json_key="ingress")], "kserve")
    (features,) = upstream_docs("knative-features")
    # Knative documents its settings in _example: a documented key is accepted, a misspelt one refused
    apply_patches([features], [ConfigMapPatch("knative-serving", "config-features", {"kubernetes.podspec-affinity": "enabled"})], "knative")
    with pytest.raises(PreflightError, match="has no setting kubernetes.podspec-afinity"):
        apply_patches([features], [ConfigMapPatch("knative-serving", "config-features", {"kubernetes.podspec-afinity": "enabled"})], "knative")
    with pytest.raises(PreflightError, match="no ConfigMap knative-serving/config-network"):
        apply_patches([features], [ConfigMapPatch("knative-serving", "config-network", {"ingress-class": "x"})], "knative")


def test_one_predictor_address_everywhere(config):
    import yaml as pyyaml

    from charts import gateway, inference_service, prometheus

    # What KServe reports as status.address.url with disableIstioVirtualHost (ingress_reconciler.go getHostPrefix)
    expected = f"http://{config.serving.model_name}-predictor.ml-prod.svc.cluster.local"
    assert inference_service.predictor_url(config) == expected
    command = gateway.objects(config)[0]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--predictor-url") + 1] == expected
    # Prometheus does not use that address: a scrape through the Knative route counts as traffic and keeps a
    # pod up (no scale to zero), and through a Service it lands on a random pod; it scrapes pod by pod.
    config_map = next(o for o in prometheus.objects(config) if o["metadata"]["name"] == "prometheus-config")
    scrape = pyyaml.safe_load(config_map["data"]["prometheus.yml"])
    (predictor_job,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "predictor"]
    assert "static_configs" not in predictor_job and predictor_job["kubernetes_sd_configs"][0]["role"] == "pod"
    assert expected.removeprefix("http://") not in config_map["data"]["prometheus.yml"]


# --- point 3: Knative accepts the predictor pod with its shipped feature flags ----------------------

# Pod fields Knative always accepts (knative/serving pkg/apis/serving/fieldmask.go PodSpecMask, v1.21.1)
ALWAYS = {"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks"}
# KServe's component fields around the inlined PodSpec (not pod fields)
KSERVE_COMPONENT = {"minReplicas", "maxReplicas", "canaryTrafficPercent", "model", "containerConcurrency", "timeout",
                    "scaleTarget", "scaleMetric", "logger", "batcher", "labels", "annotations",
                    "storageContainerName"}  # PredictorSpec (pkg/apis/serving/v1beta1/predictor.go): read by KServe
# Volume types and the config-features flag that allows each (emptyDir is enabled by default)
VOLUME_FLAGS = {"emptyDir": "kubernetes.podspec-volumes-emptydir", "persistentVolumeClaim": "kubernetes.podspec-persistent-volume-claim",
                "hostPath": "kubernetes.podspec-volumes-hostpath", "csi": "kubernetes.podspec-volumes-csi"}
ALWAYS_VOLUMES = {"name", "secret", "configMap", "projected"}
# Container securityContext fields SecurityContextMask keeps
CONTAINER_SECURITY = {"capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup", "runAsNonRoot",
                      "allowPrivilegeEscalation", "seccompProfile"}


def _feature_defaults() -> dict[str, str]:
    (features,) = upstream_docs("knative-features")
    found = re.findall(r'^\s*([a-z0-9.-]+):\s*"([a-z-]+)"', features["data"]["_example"], flags=re.MULTILINE)
    return {**dict(found), **{k: v for k, v in features["data"].items() if k != "_example"}}


def _flag(field: str) -> str:
    return "kubernetes.podspec-" + {"initContainers": "init-containers"}.get(field, field.lower())


def refused_by_knative(predictor: dict, flags: dict[str, str]) -> list[str]:
    refused = []
    for key in predictor:
        if key in ALWAYS or key in KSERVE_COMPONENT:
            continue
        if flags.get(_flag(key), "disabled") == "disabled":
            refused.append(f"pod field {key} ({_flag(key)} is {flags.get(_flag(key), 'unknown')})")
    for volume in predictor.get("volumes", []):
        for kind in set(volume) - ALWAYS_VOLUMES:
            if flags.get(VOLUME_FLAGS.get(kind, f"unknown volume {kind}"), "disabled") == "disabled":
                refused.append(f"volume type {kind}")
    for c in predictor.get("containers", []) + ([predictor["model"]] if "model" in predictor else []):
        for field in set(c.get("securityContext", {})) - CONTAINER_SECURITY:
            refused.append(f"container securityContext.{field}")
        added = set((c.get("securityContext", {}).get("capabilities") or {}).get("add", [])) - {"NET_BIND_SERVICE"}
        if added:
            refused.append(f"capabilities.add {sorted(added)}")
    return refused


@pytest.mark.parametrize("runtime", ["mlops", "huggingface"])
def test_knative_accepts_the_predictor_with_shipped_feature_flags(project, runtime):
    from charts import inference_service
    from mlops_cli.config.loading import load_config

    pins = build_bundle(project / "bundle")
    (project / "mlops.toml").write_text(f'[serving]\nruntime = "{runtime}"\n' + kubernetes_toml(project / "bundle", pins))
    cfg = load_config()
    isvc = inference_service.render(cfg, version="1", source_uri="s3://b/1/r/artifacts/model", canary=10)
    flags = _feature_defaults()
    assert flags["kubernetes.podspec-securitycontext"] == "disabled"
    assert refused_by_knative(isvc["spec"]["predictor"], flags) == []
    # the checker itself refuses what Knative refuses
    assert refused_by_knative({**isvc["spec"]["predictor"], "securityContext": {"runAsNonRoot": True}}, flags) != []
    assert refused_by_knative({**isvc["spec"]["predictor"], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "x"}}]}, flags) != []


# --- security: the predictor is cluster-local ------------------------------------------------------

def test_predictor_is_cluster_local_and_no_public_route_reaches_it(config):
    from charts import inference_service
    from charts.platform import all_objects

    isvc = inference_service.render(config, version="1", source_uri="s3://b/1/r/artifacts/model")
    assert isvc["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    predictor_services = {f"{config.serving.model_name}-predictor", config.serving.model_name}
    for obj in all_objects(config, None):
        if obj["kind"] in ("Ingress", "HTTPRoute", "GRPCRoute"):
            text = yaml.safe_dump(obj["spec"])
            for name in predictor_services:
                assert not re.search(rf"\bname: {re.escape(name)}\b", text), f"{obj['kind']} {obj['metadata']['name']} routes to {name}"


# --- security: edge, namespace, network -------------------------------------------------------------

def test_admin_routes_are_not_on_the_public_entry_point(config):
    from charts import edge

    public, redirect = edge.routes(config)
    matches = [m["path"] for rule in public["spec"]["rules"] for m in rule["matches"]]
    assert matches == [{"type": "Exact", "value": "/predict"}, {"type": "Exact", "value": "/predict/batch"},
                       {"type": "Exact", "value": "/feedback"}]   # labels for predictions (issue 25)
    assert [b["name"] for rule in public["spec"]["rules"] for b in rule["backendRefs"]] == ["gateway"]
    assert all("backendRefs" not in rule for rule in redirect["spec"]["rules"])  # port 80 only redirects


def test_pod_security_restricted_is_enforced_on_our_namespace(config):
    from charts.objects import PART_OF
    from charts.platform import all_objects

    namespaces = {o["metadata"]["name"]: o["metadata"].get("labels", {}) for o in all_objects(config, None) if o["kind"] == "Namespace"}
    assert namespaces["ml-prod"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # our one hostPath user (promtail reads node logs) lives alone in its own namespace; upstream's own
    # (KServe's kserve-localmodelnode-agent DaemonSet in kserve.yaml) stays in the upstream namespace
    hostpath = {o["metadata"]["namespace"] for o in all_objects(config, None) if o["kind"] in ("Deployment", "DaemonSet")
                and (o["metadata"].get("labels") or {}).get("app.kubernetes.io/part-of") == PART_OF
                and any("hostPath" in v for v in o["spec"]["template"]["spec"].get("volumes", []))}
    assert hostpath == {"ml-prod-logs"}


def _admits(policies: list[dict], to_labels: dict, from_ns: str, from_labels: dict, port: int, ns: str = "ml-prod") -> bool:
    """What a NetworkPolicy implementation decides for one connection into namespace ns."""
    def matches(selector: dict, labels: dict) -> bool:
        return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())

    selecting = [p for p in policies if matches(p["spec"]["podSelector"], to_labels) and "Ingress" in p["spec"]["policyTypes"]]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            if rule.get("ports") and port not in [p["port"] for p in rule["ports"]]:
                continue
            for peer in rule.get("from", []):
                ns_ok = matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": from_ns}) if "namespaceSelector" in peer else from_ns == ns
                pod_ok = matches(peer["podSelector"], from_labels) if "podSelector" in peer else True
                if ns_ok and pod_ok:
                    return True
    return False


def test_network_policies_deny_by_default_and_allow_what_is_named(config):
    from charts import network_policies
    from charts.objects import labels

    policies = network_policies.objects(config)
    predictor = {"serving.kserve.io/inferenceservice": config.serving.model_name}
    assert _admits(policies, predictor, "ml-prod", labels("gateway"), 8012)
    assert _admits(policies, predictor, "knative-serving", {"app": "activator"}, 8012)
    assert not _admits(policies, predictor, "ml-prod", labels("grafana"), 8012)
    assert not _admits(policies, predictor, "default", {"app": "anything"}, 8012)
    assert _admits(policies, labels("mlflow"), "ml-prod", labels("drift"), 5000)
    for ns in ("default", "kserve", "kourier-system", "envoy-gateway-system"):
        assert not _admits(policies, labels("mlflow"), ns, labels("drift"), 5000), ns  # nothing from outside
    assert not _admits(policies, labels("grafana"), "default", {}, 3000)      # port-forward only
    assert not _admits(policies, {"app.kubernetes.io/name": "new-thing"}, "ml-prod", labels("gateway"), 80)  # default deny
    assert _admits(policies, labels("loki"), "ml-prod-logs", labels("promtail"), 3100)


def test_predictor_pinned_to_mlflows_node_is_accepted_with_the_flag_set_in_the_same_render(config):
    """Models on MLflow's ReadWriteOnce PVC: the predictor carries a podAffinity, which Knative refuses
    with its shipped flags; the knative step of the same render enables exactly that flag."""
    from charts import inference_service, knative
    from charts.configmap_patch import apply_patches

    isvc = inference_service.render(config, version="1", source_uri="mlflow-artifacts:/1/models/m-1/artifacts")
    shipped = _feature_defaults()
    assert any("affinity" in r for r in refused_by_knative(isvc["spec"]["predictor"], shipped))
    (features,) = upstream_docs("knative-features")
    (patched,) = apply_patches([features], [p for p in knative.patches(config) if p.name == "config-features"], "knative")
    flags = {**shipped, **{k: v for k, v in patched["data"].items() if k != "_example"}}
    assert refused_by_knative(isvc["spec"]["predictor"], flags) == []


def test_kserve_step_creates_the_namespace_the_release_leaves_out(config):
    """KServe's kserve.yaml has every Namespace filtered out (hack/release/generate-install.sh line 118), yet
    its objects live in `kserve`: applied alone, the API server refuses them (namespaces "kserve" not found)."""
    from charts.platform import platform_steps

    released = documents(release_manifest("kserve"))
    assert not [o for o in released if o["kind"] == "Namespace"]
    assert {o["metadata"].get("namespace") for o in released} - {None} == {"kserve"}
    (step,) = [s for s in platform_steps(config, None) if s.key == "kserve"]
    assert [o["metadata"]["name"] for o in step.objects if o["kind"] == "Namespace"] == ["kserve"]


def test_only_the_cluster_serving_runtime_we_use_is_applied(config):
    """kserve-cluster-resources.yaml also holds LLMInferenceServiceConfigs, which KServe's llmisvc webhook
    refuses to delete (PREVENT_WELL_KNOWN_CONFIG_DELETION, true by default: cmd/llmisvc/main.go), so `down`
    could never remove them: of that file only the huggingface runtime is applied, exactly as released."""
    from charts.platform import platform_steps

    released = documents(release_manifest("kserve-runtimes"))
    assert {o["kind"] for o in released} == {"ClusterServingRuntime", "LLMInferenceServiceConfig"}
    (step,) = [s for s in platform_steps(config, None) if s.key == "kserve-runtimes"]
    from_release = [o for o in step.objects if o["kind"] != "ClusterStorageContainer"]
    assert from_release == [o for o in released if o["metadata"]["name"] == "kserve-huggingfaceserver"]
    # beside it only our own storage container (issue 22 item 3: test_real_storage_initializer.py)
    assert [o["metadata"]["name"] for o in step.objects if o not in from_release] == ["mlops-storage-initializer"]
