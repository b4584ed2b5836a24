"""`mlops up/down/status/deploy --target kubernetes` against an API server emulator on loopback
(tests/k8s_support.py), and an opt-in run against a real cluster (MLOPS_TEST_KUBECONFIG)."""

from __future__ import annotations

import json
import os

import pytest

from tests.k8s_support import EmulatorThread, build_bundle, kubernetes_toml, write_kubeconfig

STEP_TITLES = ["0. namespace", "1. cert-manager", "2. Knative Serving + Kourier", "3. KServe", "3. KServe serving runtimes",
               "4. Envoy Gateway: HTTPS + basic auth", "5. Prometheus, Grafana, Jaeger, Loki", "6. MLflow", "7. drift service", "8. gateway"]


@pytest.fixture
def emulator():
    with EmulatorThread() as emu:
        yield emu.server


@pytest.fixture
def k8s(project, emulator):
    """A project whose [kubernetes] section points at the emulator and an offline bundle."""
    pins = build_bundle(project / "bundle")
    kubeconfig = write_kubeconfig(project / "kubeconfig", f"http://127.0.0.1:{emulator.servers[0].port}")
    (project / "mlops.toml").write_text(
        '[project]\nname = "t"\n[serving]\nready_timeout_s = 2.0\n'
        + kubernetes_toml(project / "bundle", pins, kubeconfig, step_timeout_s=2.0))
    return emulator


def _up(cli, *extra):
    result = cli("--json", "up", "--target", "kubernetes", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_dry_run_prints_the_ordered_plan_and_writes_nothing(cli, k8s):
    result = cli("up", "--target", "kubernetes", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert k8s.writes == []
    positions = [result.stdout.find(title) for title in STEP_TITLES]
    assert -1 not in positions and positions == sorted(positions), positions
    assert "Deployment mlops/gateway" in result.stdout and "create" in result.stdout

    plan = _up(cli, "--dry-run")["steps"]
    assert [t for t in dict.fromkeys(s["detail"] for s in plan)] == STEP_TITLES
    assert {s["action"] for s in plan} == {"create"}
    crd_first = [s["name"].split()[0] for s in plan if s["detail"] == "3. KServe"]
    assert crd_first[:3] == ["Namespace", "CustomResourceDefinition", "CustomResourceDefinition"]
    assert k8s.writes == []


def test_full_install_then_second_install_changes_nothing(cli, k8s):
    first = _up(cli)
    assert {s["action"] for s in first["steps"]} == {"create"}
    for name in ("gateway", "mlflow", "drift", "prometheus", "grafana", "jaeger", "loki", "kserve-controller-manager"):
        assert k8s.find("Deployment", name) is not None, name
    assert k8s.find("HorizontalPodAutoscaler", "gateway") and k8s.find("HTTPRoute", "gateway")
    assert k8s.find("ClusterServingRuntime", "kserve-huggingfaceserver") is not None
    assert k8s.find("ConfigMap", "config-network")["data"]["ingress-class"] == "kourier.ingress.networking.knative.dev"
    # Every write was a server-side apply by our field manager.
    assert {m for m, _ in k8s.writes} == {"PATCH"}
    # The generated password is shown once and lives only in the Secret.
    password = first["gateway_password"]
    secret = k8s.find("Secret", "mlops-gateway-auth")
    import base64

    assert base64.b64decode(secret["data"]["password"]).decode() == password
    assert base64.b64decode(secret["data"][".htpasswd"]).decode().startswith("admin:{SHA}")  # Envoy Gateway basic auth

    writes = len(k8s.writes)
    second = _up(cli)
    assert {s["action"] for s in second["steps"]} == {"unchanged"}
    assert len(second["steps"]) == len(first["steps"])
    assert "gateway_password" not in second
    assert len(k8s.writes) == writes  # nothing was written

    text = cli("up", "--target", "kubernetes", "--dry-run")
    assert "create" not in text.stdout and "update" not in text.stdout


def test_a_changed_config_is_an_update_of_just_that_object(cli, k8s, project):
    _up(cli)
    with open(project / "mlops.toml", "a") as fh:
        fh.write("gateway_max_replicas = 9\n")
    steps = _up(cli)["steps"]
    changed = [s["name"] for s in steps if s["action"] != "unchanged"]
    assert changed == ["HorizontalPodAutoscaler mlops/gateway"]
    assert k8s.find("HorizontalPodAutoscaler", "gateway")["spec"]["maxReplicas"] == 9


@pytest.mark.parametrize("status", [500, 409])
def test_api_failure_midway_is_a_clear_error_and_a_rerun_converges(cli, k8s, status):
    from tests.k8s_support import Fault

    k8s.faults.append(Fault("PATCH", "/deployments/mlflow", status))
    failed = cli("up", "--target", "kubernetes")
    assert failed.exit_code != 0
    assert "Traceback" not in failed.stderr
    assert "Deployment mlops/mlflow" in failed.stderr and f"answered {status}" in failed.stderr
    assert "re-run" in failed.stderr
    assert k8s.find("Deployment", "mlflow") is None and k8s.find("Deployment", "prometheus") is not None
    assert k8s.find("Deployment", "gateway") is None  # later steps did not start

    rerun = _up(cli)
    actions = {s["name"]: s["action"] for s in rerun["steps"]}
    assert actions["Deployment mlops/mlflow"] == "create"
    assert actions["Deployment mlops/prometheus"] == "unchanged"
    assert {s["action"] for s in _up(cli)["steps"]} == {"unchanged"}


def test_a_stuck_deployment_times_out_naming_it_and_its_events(cli, k8s):
    k8s.stuck.add("drift")
    result = cli("up", "--target", "kubernetes")
    assert result.exit_code != 0
    assert "Deployment mlops/drift" in result.stderr and "Available" in result.stderr
    assert "FailedScheduling" in result.stderr and "insufficient memory" in result.stderr
    assert "step_timeout_s" in result.stderr


def test_down_removes_what_up_created(cli, k8s):
    _up(cli)
    before = len(k8s.store)
    result = cli("--json", "down", "--target", "kubernetes")
    assert result.exit_code == 0, result.stderr
    left = {(o["kind"], o["metadata"]["name"]) for o in k8s.store.values()}
    assert {kind for kind, _ in left} == {"CustomResourceDefinition", "PersistentVolumeClaim", "Namespace"}
    assert ("Namespace", "mlops") in left and ("Namespace", "kserve") not in left
    assert before > len(left)
    # Reverse order: the gateway goes before MLflow, KServe before cert-manager.
    deletes = [path for method, path in k8s.writes if method == "DELETE"]
    index = {name: next(i for i, p in enumerate(deletes) if p.endswith(name))
             for name in ("/deployments/gateway", "/deployments/mlflow", "/deployments/kserve-controller-manager",
                          "/deployments/cert-manager-webhook")}
    assert index["/deployments/gateway"] < index["/deployments/mlflow"] < index["/deployments/kserve-controller-manager"] \
        < index["/deployments/cert-manager-webhook"]

    purged = cli("down", "--target", "kubernetes", "--purge", "--yes")
    assert purged.exit_code == 0, purged.stderr
    assert k8s.store == {}


@pytest.fixture
def registry(monkeypatch):
    """The training engineer's resolve_version, substituted at its seam: version N lives in S3."""
    from mlops_cli.core import registry as reg

    def resolve_version(config, version=None, alias=None):
        version = version or "1"
        return reg.ModelRef(name="review-sentiment", version=version, run_id=f"run{version}",
                            source=f"s3://bucket/mlflow/1/run{version}/artifacts/model", aliases=[], tags={}, created="")

    monkeypatch.setattr(reg, "resolve_version", resolve_version)


def _isvc(k8s):
    return k8s.find("InferenceService", "sentiment")


def test_deploy_canary_promote_and_rollback(cli, k8s, registry):
    assert cli("deploy", "--version", "1", "--target", "kubernetes").exit_code == 0
    v1 = _isvc(k8s)
    assert v1["metadata"]["annotations"]["mlops.dev/model-version"] == "1"
    assert "canaryTrafficPercent" not in v1["spec"]["predictor"]
    v1_spec = json.loads(json.dumps(v1["spec"]))

    result = cli("--json", "deploy", "--version", "2", "--target", "kubernetes", "--canary", "10")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["traffic"] == "v1 90%, v2 10% (canary)"
    canary = _isvc(k8s)["spec"]["predictor"]
    assert canary["canaryTrafficPercent"] == 10
    command = canary["containers"][0]["command"]
    assert command[command.index("--version") + 1] == "2"
    assert {"name": "STORAGE_URI", "value": "s3://bucket/mlflow/1/run2/artifacts/model/artifacts/classifier"} in canary["containers"][0]["env"]

    status = json.loads(cli("--json", "status", "--target", "kubernetes").stdout)
    predictor = next(c for c in status["components"] if c["component"] == "predictor")
    assert predictor["healthy"] and predictor["version"] == "2" and predictor["url"] == "http://sentiment-predictor.mlops.svc.cluster.local"  # cluster-local
    assert "v1 90%, v2 10%" in predictor["detail"]

    assert cli("deploy", "--rollback", "--target", "kubernetes").exit_code == 0
    assert _isvc(k8s)["spec"] == v1_spec
    assert _isvc(k8s)["metadata"]["annotations"]["mlops.dev/model-version"] == "1"

    assert cli("deploy", "--version", "2", "--target", "kubernetes", "--canary", "10").exit_code == 0
    assert cli("deploy", "--promote", "--target", "kubernetes").exit_code == 0
    promoted = _isvc(k8s)
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert promoted["metadata"]["annotations"]["mlops.dev/model-version"] == "2"
    assert cli("deploy", "--rollback", "--target", "kubernetes").exit_code == 0
    assert _isvc(k8s)["spec"] == v1_spec


def test_rollback_after_a_deploy_that_never_got_ready_restores_the_last_ready_spec(cli, k8s, registry):
    assert cli("deploy", "--version", "1", "--target", "kubernetes").exit_code == 0
    v1_spec = json.loads(json.dumps(_isvc(k8s)["spec"]))
    k8s.isvc_ready = False
    failed = cli("deploy", "--version", "2", "--target", "kubernetes")
    assert failed.exit_code == 1
    assert "InferenceService mlops/sentiment" in failed.stderr and "RevisionMissing" in failed.stderr
    assert "[serving].ready_timeout_s" in failed.stderr
    k8s.isvc_ready = True
    assert cli("deploy", "--rollback", "--target", "kubernetes").exit_code == 0
    assert _isvc(k8s)["spec"] == v1_spec


def test_first_deploy_with_canary_carries_the_percentage(cli, k8s, registry):
    result = cli("deploy", "--version", "1", "--target", "kubernetes", "--canary", "10")
    assert result.exit_code == 0, result.stderr
    assert _isvc(k8s)["spec"]["predictor"]["canaryTrafficPercent"] == 10
    nothing = cli("deploy", "--rollback", "--target", "kubernetes")
    assert nothing.exit_code == 2 and "nothing to roll back to" in nothing.stderr


def test_deploy_after_up_points_the_gateway_at_the_inference_service(cli, k8s, registry):
    _up(cli)
    result = cli("--json", "deploy", "--version", "1", "--target", "kubernetes")
    assert result.exit_code == 0, result.stderr
    command = k8s.find("Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--predictor-url") + 1] == "http://sentiment-predictor.mlops.svc.cluster.local"
    assert {s["action"] for s in _up(cli)["steps"]} == {"unchanged"}  # deploy and up agree on the gateway


def test_no_secret_value_in_output_at_any_verbosity(cli, k8s, monkeypatch):
    sentinel = "env-Password-Sentinel-99"
    monkeypatch.setenv("MLOPS_GATEWAY_PASSWORD", sentinel)
    for args in (("-vv", "up", "--target", "kubernetes"), ("--json", "up", "--target", "kubernetes"),
                 ("-vv", "up", "--target", "kubernetes", "--dry-run"), ("--json", "status", "--target", "kubernetes")):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        assert sentinel not in result.stdout + result.stderr, args
    import base64

    secret = k8s.find("Secret", "mlops-gateway-auth")
    assert base64.b64decode(secret["data"]["password"]).decode() == sentinel
    others = json.dumps([o for o in k8s.store.values() if o["kind"] != "Secret"])
    assert sentinel not in others and secret["data"][".htpasswd"] not in others


@pytest.fixture
def fake_ingress():
    """Stands in for ingress-nginx + gateway: checks basic auth against `expected`, answers /predict/batch."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = {"expected": None, "seen": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            auth = self.headers.get("Authorization", "")
            creds = base64.b64decode(auth.removeprefix("Basic ")).decode() if auth.startswith("Basic ") else ""
            state["seen"].append((self.path, creds))
            ok = creds == state["expected"]
            payload = {"predictions": [{"label": "Positive", "confidence": 0.9, "model_version": "1"} for _ in body["texts"]]}
            data = json.dumps(payload if ok else {"error": "unauthorized"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["host"] = f"127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()


def test_predict_goes_through_the_ingress_with_the_generated_credentials(cli, k8s, project, fake_ingress):
    with open(project / "mlops.toml", "a") as fh:
        fh.write(f'ingress_host = "{fake_ingress["host"]}"\n')
    password = _up(cli)["gateway_password"]
    fake_ingress["expected"] = f"admin:{password}"
    result = cli("--json", "predict", "a wonderful film", "--target", "kubernetes")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["label"] == "Positive"
    assert fake_ingress["seen"][-1] == ("/predict/batch", f"admin:{password}")
    assert password not in result.stdout + result.stderr

    fake_ingress["expected"] = "admin:rotated"
    denied = cli("predict", "a wonderful film", "--target", "kubernetes")
    assert denied.exit_code == 1 and "answered 401" in denied.stderr and password not in denied.stderr


def test_logs_show_the_newest_pod_of_a_component(cli, k8s, project):
    _up(cli)
    for name, created in (("gateway-old", "2026-11-26T00:00:00Z"), ("gateway-new", "2026-11-26T01:00:00Z")):
        k8s.store[("v1", "pods", "mlops", name)] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "mlops", "creationTimestamp": created,
                         "labels": {"app.kubernetes.io/name": "gateway", "app.kubernetes.io/part-of": "mlops"}}}
        k8s.pod_logs[name] = "\n".join(f"{name} line {i}" for i in range(10))
    result = cli("logs", "gateway", "--target", "kubernetes", "-n", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"gateway-new line {i}" for i in (7, 8, 9)]
    missing = cli("logs", "drift", "--target", "kubernetes")
    assert missing.exit_code == 1 and "no pods match app.kubernetes.io/name=drift" in missing.stderr
    unknown = cli("logs", "nonsense", "--target", "kubernetes")
    assert unknown.exit_code == 2 and "unknown component" in unknown.stderr


def test_doctor_checks_name_a_missing_kubeconfig(project):
    from mlops_cli.core.config import load_config
    from mlops_cli.targets.kubernetes import KubernetesTarget

    (project / "mlops.toml").write_text('[kubernetes]\nkubeconfig = "nowhere/kubeconfig"\n')
    checks = KubernetesTarget(load_config()).checks()
    assert checks[0].name == "kubeconfig present" and not checks[0].ok and "KUBECONFIG" in checks[0].fix


def test_doctor_checks_show_the_context(project, k8s):
    from mlops_cli.core.config import load_config
    from mlops_cli.targets.kubernetes import KubernetesTarget

    checks = KubernetesTarget(load_config()).checks()
    assert [c.ok for c in checks] == [True, True, True]
    assert checks[1].detail.startswith("emulator -> http://127.0.0.1:")
    assert checks[2].detail.endswith(": v1.26.4+k3s1")  # what the emulator says it is


@pytest.mark.cluster
@pytest.mark.skipif(not os.environ.get("MLOPS_TEST_KUBECONFIG"), reason="MLOPS_TEST_KUBECONFIG is not set: no real cluster to test against")
def test_real_cluster_install_deploy_predict_down(cli, project, monkeypatch):
    """Install into a real cluster, deploy the registered version 1, predict through the ingress, tear down.

    Needs: MLOPS_TEST_KUBECONFIG, upstream pins (MLOPS_KUBERNETES__*_SHA256) or an offline bundle, the images
    pushed, a version 1 registered in the cluster's MLflow ([registry].tracking_uri), and the ingress host resolvable.
    """
    monkeypatch.setenv("MLOPS_KUBERNETES__KUBECONFIG", os.environ["MLOPS_TEST_KUBECONFIG"])
    for name in ("MLOPS_TEST_TRACKING_URI", "MLOPS_TEST_INGRESS_HOST"):
        if os.environ.get(name):
            key = "MLOPS_REGISTRY__TRACKING_URI" if "TRACKING" in name else "MLOPS_KUBERNETES__INGRESS_HOST"
            monkeypatch.setenv(key, os.environ[name])
    assert cli("up", "--target", "kubernetes", "--yes").exit_code == 0
    try:
        assert cli("deploy", "--version", "1", "--target", "kubernetes").exit_code == 0
        result = cli("--json", "predict", "a wonderful, moving film", "--target", "kubernetes")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["label"] in {"Positive", "Negative", "Neutral"}
    finally:
        assert cli("down", "--target", "kubernetes", "--yes").exit_code == 0
