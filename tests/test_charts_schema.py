"""Every object `charts/` renders validates against the Kubernetes schemas of the configured version,
custom resources against their CRD's schema, and no secret value appears outside a Secret."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from tests.upstream_bundle import build_bundle, kubernetes_toml
from tests.schema_support import _crd_schemas, real_crd_schemas, validate as _validate
from tests.support import http_server

SENTINEL_PASSWORD = "gw-Secret-Sentinel-4711"
SENTINEL_S3 = "s3-Secret-Sentinel-0815"
SENTINEL_DB = "db-Secret-Sentinel-2342"
SENTINEL_ADMIN = "admin-Secret-Sentinel-1234"

NON_DEFAULT = {
    "namespace": "ml-prod",
    "version": "1.33",
    "ingress_host": "ml.example.org",
    "storage_class": "gp3",
    "mlflow_artifacts": "s3://models-bucket/mlflow",
    "mlflow_backend_uri": f"postgresql://mlflow:{SENTINEL_DB}@db.internal/mlflow",
    "predictions_access_mode": "ReadWriteMany",
    "gateway_min_replicas": 3,
    "gateway_max_replicas": 10,
    "resources": {"gateway": {"cpu": "500m", "memory": "1Gi"}, "predictor": {"cpu": "2", "memory": "4Gi"}},
}


def _config(project: Path, extra: dict, serving: str = ""):
    from mlops_cli.config.loading import load_config

    pins = build_bundle(project / "bundle")
    (project / "mlops.toml").write_text('[project]\nname = "t"\n' + serving + kubernetes_toml(project / "bundle", pins, **extra))
    return load_config()


@pytest.fixture(params=["default", "non-default"])
def config(request, project):
    if request.param == "default":
        return _config(project, {})
    return _config(project, NON_DEFAULT, '[serving]\nruntime = "huggingface"\nmin_replicas = 1\nmax_replicas = 5\n')


def _secrets():
    from charts.secrets import GatewayCredentials, PlatformSecrets

    return PlatformSecrets(gateway=GatewayCredentials("admin", SENTINEL_PASSWORD),
                           s3=("AKIAEXAMPLE", SENTINEL_S3), admin=GatewayCredentials("admin", SENTINEL_ADMIN))


def _rendered(config) -> list[dict]:
    from charts import inference_service
    from charts.platform import all_objects

    objs = all_objects(config, _secrets())
    objs.append(inference_service.render(config, version="3", source_uri="s3://models-bucket/mlflow/1/abc/artifacts/model", canary=10))
    return objs


@pytest.mark.parametrize("k8s_version", ["1.34", "1.35"])
def test_every_object_validates_for_kubernetes_1_34_and_1_35(config, k8s_version):
    objects = _rendered(config)
    crds = _crd_schemas(objects)
    kinds = set()
    for obj in objects:
        try:
            _validate(obj, k8s_version, crds)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata'].get('name')}: {exc.message} at {list(exc.absolute_path)}")
        kinds.add(obj["kind"])
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy", "DaemonSet", "Secret", "Gateway", "HTTPRoute",
            "SecurityPolicy", "Certificate", "PersistentVolumeClaim", "ConfigMap", "InferenceService", "CustomResourceDefinition"} <= kinds


def test_configured_version_is_what_eks_defaults_to(project):
    from mlops_cli.config.loading import load_config

    config = load_config()
    assert config.kubernetes.version == config.eks.version == "1.35"


@pytest.mark.parametrize("runtime", ["mlops", "huggingface"])
def test_inference_service_matches_the_real_kserve_crd(project, runtime):
    from charts import inference_service
    from charts.image_refs import image_ref

    config = _config(project, {}, f'[serving]\nruntime = "{runtime}"\n')
    schema = real_crd_schemas()[("serving.kserve.io/v1beta1", "InferenceService")]
    isvc = inference_service.render(config, version="2", source_uri="mlflow-artifacts:/1/models/m-abc/artifacts", canary=25)
    jsonschema.Draft7Validator(schema).validate(isvc)
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 25
    assert predictor["minReplicas"] == 0 and predictor["maxReplicas"] == 3
    # Scaled on coalesced calls in flight per replica, not Knative's default 100 requests.
    assert predictor["scaleMetric"] == "concurrency" and predictor["scaleTarget"] == config.gateway.predictor_calls == 2
    uri = "pvc://mlflow-data/artifacts/1/models/m-abc/artifacts/artifacts/classifier"
    if runtime == "huggingface":
        assert predictor["model"]["modelFormat"]["name"] == "huggingface" and predictor["model"]["storageUri"] == uri
    else:
        container = predictor["containers"][0]
        assert container["image"] == image_ref(config, "predictor")
        assert {"name": "STORAGE_URI", "value": uri} in container["env"]
        assert container["command"][:3] == ["python", "-m", "models.predictor"]
        assert "--version" in container["command"] and "2" in container["command"]
    # The real schema, made strict, refuses a misplaced field.
    broken = json.loads(json.dumps(isvc))
    broken["spec"]["predictor"]["canaryPercent"] = 10
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_workloads_are_hardened(config):
    objects = _rendered(config)
    ours = [o for o in objects if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/part-of") == "mlops"]
    pods = [(o, o["spec"]["template"]["spec"]) for o in ours if o["kind"] in ("Deployment", "DaemonSet")]
    for isvc in (o for o in ours if o["kind"] == "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        # Knative-managed: the hardening sits on the container, never on the pod (see the next test)
        pods.append((isvc, {"containers": predictor.get("containers") or [{"name": "model", **predictor["model"]}]}))
    assert len(pods) >= 9
    for obj, pod in pods:
        for c in pod["containers"] + pod.get("initContainers", []):
            where = f"{obj['kind']} {obj['metadata']['name']}/{c['name']}"
            effective = {**pod.get("securityContext", {}), **c["securityContext"]}
            assert effective["runAsNonRoot"] is True and effective.get("runAsUser", 0) != 0, where
            assert effective["seccompProfile"]["type"] == "RuntimeDefault", where
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), where


def test_no_secret_value_outside_secrets(config):
    objects = _rendered(config)
    secrets = [o for o in objects if o["kind"] == "Secret"]
    others = json.dumps([o for o in objects if o["kind"] != "Secret"])
    for value in (SENTINEL_PASSWORD, SENTINEL_S3, SENTINEL_DB, SENTINEL_ADMIN, "$2b$10$abcdefghijklmnopqrstuv"):
        assert value not in others
    in_secrets = json.dumps(secrets)
    assert SENTINEL_PASSWORD in in_secrets and SENTINEL_ADMIN in in_secrets
    if config.kubernetes.mlflow_backend_uri:
        assert SENTINEL_DB in in_secrets and SENTINEL_S3 in in_secrets


def test_grafana_and_the_gateway_admin_use_the_admin_secret_not_the_predict_one(config):
    """D16: Grafana's admin password was the gateway's /predict password (one Secret for both)."""
    from charts import secrets

    objects = {(o["kind"], o["metadata"]["name"]): o for o in _rendered(config)}
    assert objects[("Secret", secrets.ADMIN_AUTH)]["stringData"] == {"user": "admin", "password": SENTINEL_ADMIN}

    def env_refs(deployment: str) -> dict[str, str]:
        container = objects[("Deployment", deployment)]["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e
                and "secretKeyRef" in e["valueFrom"]}

    grafana = env_refs("grafana")
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == grafana["GF_SECURITY_ADMIN_USER"] == secrets.ADMIN_AUTH
    gateway = env_refs("gateway")
    assert gateway["MLOPS_GATEWAY_ADMIN_PASSWORD"] == secrets.ADMIN_AUTH
    assert gateway["MLOPS_GATEWAY_PASSWORD"] == secrets.GATEWAY_AUTH


def test_gateway_autoscales_on_cpu_and_on_request_rate_only_with_an_adapter(config):
    from charts import gateway
    from charts.inference_service import predictor_url

    dep, svc, hpa = gateway.objects(config)
    assert "replicas" not in dep["spec"]  # the HPA owns it
    # issue 26 D17: the Pods metric needs a custom-metrics adapter `up` never installs, and an HPA with an
    # unreadable metric never scales down (kubernetes/kubernetes#99514): CPU only unless one is configured
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]
    with_adapter = gateway.hpa(config.with_overrides({"kubernetes.gateway_target_rps": 40}))
    assert [m["type"] for m in with_adapter["spec"]["metrics"]] == ["Resource", "Pods"]
    assert with_adapter["spec"]["metrics"][1]["pods"]["target"]["averageValue"] == "40"
    assert hpa["spec"]["minReplicas"] == config.kubernetes.gateway_min_replicas
    command = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "mlops_cli.services.gateway"]
    assert command[command.index("--predictor-url") + 1] == predictor_url(config)


def test_public_edge_is_envoy_gateway_with_tls_and_basic_auth(config):
    import base64
    import hashlib

    from charts import edge, secrets

    objs = {(o["kind"], o["metadata"]["name"]): o for o in edge.objects(config, _secrets())}
    gw = objs[("Gateway", "mlops-edge")]
    https = next(listener for listener in gw["spec"]["listeners"] if listener["name"] == "https")
    assert https["port"] == 443 and https["tls"]["certificateRefs"] == [{"kind": "Secret", "name": edge.TLS_SECRET}]
    cert = objs[("Certificate", "mlops-edge")]
    assert cert["spec"]["secretName"] == edge.TLS_SECRET and cert["spec"]["dnsNames"] == [config.kubernetes.ingress_host]
    assert objs[("GatewayClass", "mlops")]["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    policy = objs[("SecurityPolicy", "gateway-basic-auth")]
    assert policy["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "gateway"}]
    assert policy["spec"]["basicAuth"]["users"]["name"] == secrets.GATEWAY_AUTH
    line = objs[("Secret", secrets.GATEWAY_AUTH)]["stringData"][".htpasswd"]
    assert line == "admin:{SHA}" + base64.b64encode(hashlib.sha1(SENTINEL_PASSWORD.encode()).digest()).decode()
    redirect = objs[("HTTPRoute", "gateway-https-redirect")]
    assert redirect["spec"]["rules"][0]["filters"][0]["requestRedirect"]["scheme"] == "https"
    assert not any(o["kind"] == "Ingress" for o in objs.values())


def test_only_the_gateway_reaches_the_predictor(config):
    from charts import network_policies

    policy = network_policies.predictor_policy(config)
    assert policy["spec"]["podSelector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": config.serving.model_name}
    sources = policy["spec"]["ingress"][0]["from"]
    pod_sources = [s["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for s in sources if "podSelector" in s]
    assert pod_sources == ["gateway", "prometheus"]
    assert {s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for s in sources if "namespaceSelector" in s} \
        == {"knative-serving", "kourier-system"}


def test_prometheus_and_grafana_use_the_shipped_observability_files(config):
    import yaml

    from charts import grafana, observability_files, prometheus

    objs = {o["metadata"]["name"]: o for o in prometheus.objects(config) + grafana.objects(config)}
    scrape = yaml.safe_load(objs["prometheus-config"]["data"]["prometheus.yml"])
    ns = config.kubernetes.namespace
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    # Pod by pod, never through a Service: each scrape of a Service lands on a random pod and increase()
    # reads every switch as a counter reset (Prometheus docs/querying/functions.md).
    for name, port in (("gateway", 8080), ("drift", 8085), ("predictor", 8080)):
        assert "static_configs" not in jobs[name]
        assert jobs[name]["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": [ns]}}]
        address = [r for r in jobs[name]["relabel_configs"] if r.get("target_label") == "__address__"]
        assert address == [{"source_labels": ["__meta_kubernetes_pod_ip"], "regex": "(.+)",
                            "replacement": f"$1:{port}", "target_label": "__address__"}], name
    revision = [r for r in jobs["predictor"]["relabel_configs"] if r.get("target_label") == "revision"]
    assert revision[0]["source_labels"] == ["__meta_kubernetes_pod_label_serving_knative_dev_revision"]
    shipped = observability_files.scrape_config()
    # the shipped jobs, in order, then what only the cluster has (Knative's queue-proxy: tests/test_scale_to_zero.py)
    assert [j["job_name"] for j in scrape["scrape_configs"]] == \
        [j["job_name"] for j in shipped["scrape_configs"]] + list(prometheus.CLUSTER_ONLY)
    assert objs["prometheus-rules"]["data"] == observability_files.alert_rules()
    assert objs["grafana-dashboards"]["data"]["mlops.json"] == observability_files.dashboard()
    sources = yaml.safe_load(objs["grafana-datasources"]["data"]["datasources.yaml"])["datasources"]
    assert {s["type"] for s in sources} == {"prometheus", "loki", "jaeger"}


def test_upstream_manifests_must_match_their_pins(project):
    from charts import upstream
    from mlops_cli.common.errors import ConfigError, PreflightError

    config = _config(project, {})
    assert upstream.load(config, "kserve")[1]["kind"] == "CustomResourceDefinition"
    (project / "bundle" / "kserve.yaml").write_text((project / "bundle" / "kserve.yaml").read_text() + "\n# tampered\n")
    with pytest.raises(PreflightError, match="kserve_sha256 pins"):
        upstream.load(config, "kserve")
    unpinned = config.with_overrides({"kubernetes.cert_manager_sha256": ""})
    with pytest.raises(ConfigError, match="cert_manager_sha256 is empty"):
        upstream.load(unpinned, "cert-manager")


def test_pin_check_on_real_release_files(project):
    """The bundle's kserve-runtimes is KServe's real kserve-cluster-resources.yaml (tests/upstream_files.py):
    its pin is what `sha256sum` says, the refusal of an unpinned file names the command that computes it,
    a wrong pin and one changed byte are refused, and the verified file yields the real ClusterServingRuntimes."""
    import subprocess

    from charts import upstream
    from mlops_cli.common.errors import ConfigError, PreflightError

    config = _config(project, {})
    real = project / "bundle" / "kserve-runtimes.yaml"
    actual = subprocess.run(["sha256sum", str(real)], capture_output=True, text=True, check=True).stdout.split()[0]
    unpinned = config.with_overrides({"kubernetes.kserve_runtimes_sha256": ""})
    with pytest.raises(ConfigError) as refused:
        upstream.load(unpinned, "kserve-runtimes")
    assert actual in refused.value.message
    p = upstream.pin(config, "kserve-runtimes")
    assert f"curl -fsSL {p.url} | sha256sum" in refused.value.hint and "v0.20.0" in p.url
    config = config.with_overrides({"kubernetes.kserve_runtimes_sha256": "0" * 64})
    with pytest.raises(PreflightError, match="kserve_runtimes_sha256 pins"):
        upstream.load(config, "kserve-runtimes")
    pinned = config.with_overrides({"kubernetes.kserve_runtimes_sha256": actual})
    runtimes = upstream.load(pinned, "kserve-runtimes")
    assert {o["kind"] for o in runtimes} >= {"ClusterServingRuntime"}
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 1
    (project / "bundle" / "kserve-runtimes.yaml").write_bytes(bytes(data))
    with pytest.raises(PreflightError, match="sha256 of .*kserve-runtimes.yaml is"):
        upstream.load(pinned, "kserve-runtimes")


def test_storage_uri_comes_from_the_mlflow_artifact_location(project):
    from charts.inference_service import storage_uri
    from mlops_cli.common.errors import ConfigError

    config = _config(project, {})
    assert storage_uri(config, "s3://b/1/r/artifacts/model") == "s3://b/1/r/artifacts/model/artifacts/classifier"
    assert storage_uri(config, "mlflow-artifacts:/1/r/artifacts/model/") == "pvc://mlflow-data/artifacts/1/r/artifacts/model/artifacts/classifier"
    with pytest.raises(ConfigError, match="cannot be read from the cluster"):
        storage_uri(config, "file:///home/me/.mlops/mlflow/artifacts/1/r/artifacts/model")
    with pytest.raises(ConfigError, match="names a registered or logged model"):
        storage_uri(config, "models:/m-0123456789abcdef")  # MLflow 3's source: resolve it first


def test_models_on_mlflows_read_write_once_volume_follow_mlflow_to_its_node(project):
    """A ReadWriteOnce volume attaches to one node (a pod elsewhere fails with Multi-Attach): the
    predictor is pinned to MLflow's node, and Knative's affinity flag is enabled in the same render."""
    from charts import inference_service, knative

    config = _config(project, {})
    isvc = inference_service.render(config, version="1", source_uri="mlflow-artifacts:/1/models/m-1/artifacts")
    term = isvc["spec"]["predictor"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname" and term["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == "mlflow"
    assert any(p.name == "config-features" and p.values == {"kubernetes.podspec-affinity": "enabled"} for p in knative.patches(config))
    rwx = config.with_overrides({"kubernetes.mlflow_access_mode": "ReadWriteMany"})
    assert "affinity" not in inference_service.render(rwx, version="1", source_uri="mlflow-artifacts:/1/models/m-1/artifacts")["spec"]["predictor"]
    assert all(p.name != "config-features" for p in knative.patches(rwx))
    s3 = config.with_overrides({"kubernetes.mlflow_artifacts": "s3://b/m"})
    assert "affinity" not in inference_service.render(s3, version="1", source_uri="s3://b/m/1/models/m-1/artifacts")["spec"]["predictor"]


def test_manifests_are_downloaded_once_into_the_cache(project):
    from functools import partial
    from http.server import SimpleHTTPRequestHandler

    from charts import upstream

    config = _config(project, {})
    served = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            served.append(self.path)

    with http_server(partial(Handler, directory=str(project / "bundle"))) as base:
        url = f"{base}/kserve.yaml?v={{version}}"
        online = config.with_overrides({"kubernetes.offline_bundle": "", "kubernetes.kserve_url": url})
        first = upstream.load(online, "kserve")
        second = upstream.load(online, "kserve")
    assert first == second and first[1]["kind"] == "CustomResourceDefinition"
    assert len(served) == 1 and served[0].endswith(f"v={config.kubernetes.kserve_version}")
    cached = project / config.kubernetes.manifest_cache / "kserve" / f"{config.kubernetes.kserve_version}.yaml"
    assert cached.read_bytes() == (project / "bundle" / "kserve.yaml").read_bytes()


def test_resource_overrides_name_known_components(project):
    from charts.objects import DEFAULT_RESOURCES, resources
    from mlops_cli.common.errors import ConfigError
    from mlops_cli.config.loading import load_config

    (project / "mlops.toml").write_text('[kubernetes]\nresources = {gatway = {cpu = "1"}}\n')
    with pytest.raises(ConfigError, match="unknown component 'gatway'"):
        load_config()
    every = ", ".join(f'{name} = {{cpu = "1500m", memory = "3Gi"}}' for name in DEFAULT_RESOURCES)
    (project / "mlops.toml").write_text(f"[kubernetes]\nresources = {{{every}}}\n")
    config = load_config()
    assert resources(config, "loki") == {"requests": {"cpu": "1500m", "memory": "3Gi"}, "limits": {"cpu": "3", "memory": "3Gi"}}  # canonical, as the API server stores it


def test_the_validators_refuse_what_the_api_server_refuses(config):
    """The checks above can fail: a misspelt core field, a misplaced KServe field, a wrong type."""
    from charts import gateway, inference_service
    from tests.schema_support import problems

    dep = json.loads(json.dumps(gateway.objects(config)[0]))
    dep["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    isvc = inference_service.render(config, version="1", source_uri="s3://b/m")
    isvc["spec"]["predictor"]["minReplica"] = 1
    svc = json.loads(json.dumps(gateway.objects(config)[1]))
    svc["spec"]["ports"][0]["port"] = "eighty"
    for version in ("1.34", "1.35"):
        assert len(problems([dep, isvc, svc], version)) == 3
