"""`mlops up/down/status/deploy --target kubernetes` against an API server emulator on loopback
(tests/k8s_support.py), and an opt-in run against a real cluster (MLOPS_TEST_KUBECONFIG).

What the real control plane now runs is tested there (tests/test_real_flow.py: up twice, deploy, canary,
promote, a bad canary and rollback, down, down --purge); what stays here needs what a real cluster does not
do on request (an injected API failure, a stuck Deployment, a namespace held Terminating, a cluster
without a default StorageClass) or checks our output and plans."""

from __future__ import annotations

import copy
import json
import os

import pytest

from tests.k8s_support import EmulatorThread, write_kubeconfig
from tests.support import QuietHandler, eventually, http_server
from tests.upstream_bundle import build_bundle, kubernetes_toml
from tests.upstream_files import documents, release_manifest

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
        # 10 s: the emulator's Deployments take their time to become Available, more so on a loaded CI
        # machine (2 s failed there once); only the stuck-Deployment test waits the whole of it.
        + kubernetes_toml(project / "bundle", pins, kubeconfig, step_timeout_s=10.0))
    return emulator


@pytest.fixture(scope="module")
def installed_state(tmp_path_factory):
    """One full `mlops up` against an emulator, exported: tests that start from an installed platform
    restore it instead of paying for the install each time."""
    from mlops_cli.cli.app import main

    project = tmp_path_factory.mktemp("installed") / "proj"
    project.mkdir()
    with pytest.MonkeyPatch.context() as mp, EmulatorThread() as emu:
        for name in [n for n in os.environ if n.startswith(("MLOPS_", "MLFLOW_")) or n == "KUBECONFIG"]:
            mp.delenv(name)
        mp.setenv("NO_COLOR", "1")
        mp.chdir(project)
        pins = build_bundle(project / "bundle")
        kubeconfig = write_kubeconfig(project / "kubeconfig", emu.url)
        (project / "mlops.toml").write_text('[project]\nname = "t"\n[serving]\nready_timeout_s = 2.0\n'
                                            + kubernetes_toml(project / "bundle", pins, kubeconfig, step_timeout_s=5.0))
        try:
            main(["-q", "up", "--target", "kubernetes"])
        except SystemExit as exc:
            assert not exc.code, "the shared install failed"
        return emu.server.export()


@pytest.fixture
def installed(k8s, installed_state):
    """The emulator of `k8s`, holding a platform `mlops up` installed."""
    k8s.restore(installed_state)
    return k8s


def _up(cli, *extra):
    result = cli("--json", "up", "--target", "kubernetes", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _assert_all_created(steps: list[dict]) -> None:
    """Every object is created, once: Knative ships its CRDs in both serving-crds.yaml and serving-core.yaml
    (hack/generate-yamls.sh), so the second apply of each is unchanged."""
    names = [s["name"] for s in steps]
    assert [s["name"] for s in steps if s["action"] == "create"] == list(dict.fromkeys(names))
    assert {s["name"] for s in steps if s["action"] != "create"} == \
        {f"CustomResourceDefinition {d['metadata']['name']}" for d in documents(release_manifest("knative-crds"))}


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


def test_a_changed_config_is_an_update_of_just_that_object(cli, installed, project):
    with open(project / "mlops.toml", "a") as fh:
        fh.write("gateway_max_replicas = 9\n")
    steps = _up(cli)["steps"]
    changed = [s["name"] for s in steps if s["action"] != "unchanged"]
    assert changed == ["HorizontalPodAutoscaler mlops/gateway"]
    assert installed.find("HorizontalPodAutoscaler", "gateway")["spec"]["maxReplicas"] == 9


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


@pytest.fixture
def registry(monkeypatch):
    """The training engineer's resolve_version and MLflow's get_run, substituted at their seams: version N
    lives in S3, its logged model under models/m-N, its run's artifacts (the onnx-int8 export, tagged on
    the version) under runN/artifacts, as MLflow 3.17 lays them out (tests/test_mlflow_storage_contract.py
    proves that layout against a real server)."""
    from types import SimpleNamespace

    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.registry import versions as reg

    def resolve_version(config, version=None, alias=None):
        version = version or "1"
        return reg.ModelRef(name="review-sentiment", version=version, run_id=f"run{version}",
                            source=f"models:/m-{version}", artifact_uri=f"s3://bucket/mlflow/1/models/m-{version}/artifacts",
                            aliases=[], tags={"onnx_int8": f"runs:/run{version}/onnx-int8"}, created="")

    def get_run(config, run_id):
        return SimpleNamespace(info=SimpleNamespace(artifact_uri=f"s3://bucket/mlflow/1/{run_id}/artifacts"))

    monkeypatch.setattr(reg, "resolve_version", resolve_version)
    monkeypatch.setattr(mlflow_tracking, "get_run", get_run)


def _isvc(k8s):
    return k8s.find("InferenceService", "sentiment")


def _deploy(cli, *args):
    result = cli("--json", "deploy", "--target", "kubernetes", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_canary_on_a_canary_status_and_rollback_after_a_promotion_through_the_cli(cli, installed, registry):
    """The CLI's view of these steps, which the real control plane's tests do not check: `status` of a split,
    the traffic line each deploy prints, the InferenceService's annotations after a rollback, and `up` again
    after `down --purge`. The traffic itself is read from the real Route for a canary on a canary and a
    rollback after a promotion in tests/test_real_canary_stack.py, and for the rest in tests/test_real_flow.py."""
    k8s = installed
    assert _deploy(cli, "--version", "1")["traffic"] == "v1 100%"
    assert _deploy(cli, "--version", "2", "--canary", "20")["traffic"] == "v1 80%, v2 20% (canary)"
    # A canary on top of a canary: KServe splits the new revision with the last *rolled-out* one (v1), not v2.
    assert _deploy(cli, "--version", "3", "--canary", "20")["traffic"] == "v1 80%, v3 20% (canary)"
    status = json.loads(cli("--json", "status", "--target", "kubernetes").stdout)
    predictor = next(c for c in status["components"] if c["component"] == "predictor")
    assert predictor["healthy"] and predictor["version"] == "3" and "v1 80%, v3 20%" in predictor["detail"]
    assert predictor["url"] == "http://sentiment-predictor.mlops.svc.cluster.local"  # cluster-local

    assert _deploy(cli, "--promote")["traffic"] == "v3 100%"
    assert "canaryTrafficPercent" not in _isvc(k8s)["spec"]["predictor"]

    assert _deploy(cli, "--version", "4", "--canary", "20")["traffic"] == "v3 80%, v4 20% (canary)"
    rolled = _deploy(cli, "--rollback")
    assert rolled["traffic"] == "v3 100%" and rolled["model_version"] == "3"
    assert _isvc(k8s)["metadata"]["annotations"]["mlops.dev/model-version"] == "3"
    assert "canaryTrafficPercent" not in _isvc(k8s)["spec"]["predictor"]  # cleaned up

    # Rolling back a fully promoted version goes to the one before it (KServe's previousRolledoutRevision).
    assert _deploy(cli, "--version", "5")["traffic"] == "v5 100%"
    assert _deploy(cli, "--rollback")["traffic"] == "v3 100%"

    purged = cli("--json", "down", "--target", "kubernetes", "--purge", "--yes")
    assert purged.exit_code == 0, purged.stderr
    _assert_all_created(_up(cli)["steps"])  # a re-run up after down works


@pytest.mark.parametrize("serving, storage, runtime", [
    ("", "s3://bucket/mlflow/1/run1/artifacts/onnx-int8", "onnx-int8"),   # the default: the run's int8 export
    ('runtime = "torch"\n', "s3://bucket/mlflow/1/models/m-1/artifacts/artifacts/classifier", "torch"),
    ('runtime = "torch"\npredictor_server = "huggingface"\n', "s3://bucket/mlflow/1/models/m-1/artifacts/artifacts/classifier", None),
])
def test_deploy_serves_the_configured_runtime(cli, installed, registry, project, serving, storage, runtime):
    toml = (project / "mlops.toml").read_text()
    (project / "mlops.toml").write_text(toml.replace("[serving]\n", "[serving]\n" + serving, 1))
    _deploy(cli, "--version", "1")
    predictor = _isvc(installed)["spec"]["predictor"]
    if runtime is None:  # KServe's huggingface runtime: the fp32 weights, no flags of ours
        assert predictor["model"]["storageUri"] == storage
        return
    (container,) = predictor["containers"]
    assert {"name": "STORAGE_URI", "value": storage} in container["env"]
    command = container["command"]
    assert command[command.index("--runtime") + 1] == runtime  # explicit: never `auto` guessing from the files
    # Model threads from the pod's CPU request, not the node's core count (os.cpu_count() in a pod).
    cpu = container["resources"]["requests"]["cpu"]
    assert command[command.index("--threads") + 1] == str(max(1, int(float(cpu.rstrip("m")) / (1000 if cpu.endswith("m") else 1))))


def test_first_deploy_with_canary_gets_all_traffic_and_nothing_to_roll_back(cli, installed, registry):
    assert _deploy(cli, "--version", "1", "--canary", "10")["traffic"] == "v1 100%"
    assert _isvc(installed)["spec"]["predictor"]["canaryTrafficPercent"] == 10
    nothing = cli("deploy", "--rollback", "--target", "kubernetes")
    assert nothing.exit_code == 2 and "nothing to roll back to" in nothing.stderr
    assert cli("deploy", "--promote", "--target", "kubernetes").exit_code == 0


def test_a_canary_of_what_already_serves_is_skipped_not_judged(cli, installed, registry):
    """A release whose predictor did not change (same version, same spec) makes no new revision, so there is
    no canary to split or judge (issue 24): `deploy --canary` says so and changes nothing, and
    `--observe --promote-if-healthy` skips the gate instead of failing the release."""
    assert _deploy(cli, "--version", "1")["traffic"] == "v1 100%"
    before = copy.deepcopy(_isvc(installed))
    again = _deploy(cli, "--version", "1", "--canary", "20")
    assert again["canary_skipped"].startswith("version 1 already serves 100%") and again["traffic"] == "v1 100%"
    assert [s["action"] for s in again["steps"]] == ["unchanged"]
    assert _isvc(installed) == before  # no canaryTrafficPercent written: nothing to pin or clean up later
    judged = cli("--json", "deploy", "--target", "kubernetes", "--version", "1", "--canary", "20",
                 "--observe", "1s", "--promote-if-healthy")
    assert judged.exit_code == 0, judged.stderr
    assert json.loads(judged.stdout)["canary"]["decision"] == "skipped"
    # a changed version is a canary as before
    assert _deploy(cli, "--version", "2", "--canary", "20")["traffic"] == "v1 80%, v2 20% (canary)"


def test_deploy_before_up_is_a_clear_error(cli, k8s, registry):
    result = cli("deploy", "--version", "1", "--target", "kubernetes")
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert 'namespaces "mlops" not found' in result.stderr and "mlops up --target kubernetes" in result.stderr


def test_emulator_runs_the_gateway_probe(cli, installed, registry):
    """The emulator's truth, checked where our code depends on it (not the code under test itself). Knative's
    admission of a pod securityContext is its real webhook's, tested in tests/test_real_knative.py."""
    # The real gateway app answers its probe: /readyz is 503 until a predictor answers.
    gateway = installed.find("Deployment", "gateway")
    strict = copy.deepcopy({k: gateway[k] for k in ("apiVersion", "kind", "spec")})
    strict["metadata"] = {"name": "gateway-strict", "namespace": "mlops"}
    strict["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/readyz"
    installed.put(("apps/v1", "deployments", "mlops", "gateway-strict"), strict)

    def strict_events() -> list[str]:
        return [e["message"] for e in installed.objects_of("Event") if e["involvedObject"]["name"].startswith("gateway-strict")]

    # Polled, not slept: the emulator's kubelet probes on its own clock, slower on a loaded machine.
    eventually(lambda: "Readiness probe failed: HTTP probe failed with statuscode: 503" in strict_events())
    assert installed.find("Deployment", "gateway-strict")["status"]["conditions"][0]["status"] == "False"
    # A container whose config does not load crashes, as the real one would.
    broken = copy.deepcopy(strict)
    broken["metadata"]["name"] = "gateway-broken"
    broken["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "MLOPS_GATEWAY__TIMEOUT_S", "value": "soon"})
    installed.put(("apps/v1", "deployments", "mlops", "gateway-broken"), broken)
    _deploy(cli, "--version", "1")
    assert any(e["reason"] == "BackOff" and "ConfigError" in e["message"] and "timeout_s" in e["message"]
               for e in installed.objects_of("Event") if e["involvedObject"]["name"].startswith("gateway-broken"))
    assert installed.find("Deployment", "gateway-broken")["status"]["conditions"][0]["status"] == "False"
    eventually(lambda: installed.find("Deployment", "gateway-strict")["status"]["conditions"][0]["status"] == "True",
               "the gateway never saw the predictor")


def test_down_names_what_is_stuck_and_up_explains_a_terminating_namespace(cli, installed, registry):
    _deploy(cli, "--version", "1")
    with installed.lock:  # someone deletes KServe's controller first: nobody will remove the InferenceService's finalizer
        installed.store.pop(("apps/v1", "deployments", "kserve", "kserve-controller-manager"))
    stuck = cli("down", "--target", "kubernetes", "--purge", "--yes")
    assert stuck.exit_code == 1 and "Traceback" not in stuck.stderr
    assert "InferenceService mlops/sentiment (finalizers: inferenceservice.finalizers)" in stuck.stderr
    assert "remove the finalizer by hand" in stuck.stderr
    assert installed.find("InferenceService", "sentiment")["metadata"]["deletionTimestamp"]
    # The namespace is deleted later in the run only if we get there; delete it as a user would.
    with installed.lock:
        installed._delete(("v1", "namespaces", "", "mlops"))
    import time

    time.sleep(0.2)
    assert installed.find("Namespace", "mlops")["status"]["phase"] == "Terminating"
    writes = len(installed.writes)
    again = cli("up", "--target", "kubernetes")
    assert again.exit_code == 2 and len(installed.writes) == writes
    assert "namespace mlops is being deleted (Terminating)" in again.stderr
    assert "finalizers remaining: inferenceservice.finalizers" in again.stderr
    assert "lacks permission" not in again.stderr


def test_a_403_from_a_terminating_namespace_is_not_blamed_on_permissions():
    from mlops_cli.adapters.kube_apply import KubeApiError

    err = KubeApiError("PATCH", "ConfigMap mlops/x", 403, "Forbidden", 'configmaps "x" is forbidden: unable to create new '
                       "content in namespace mlops because it is being terminated")
    assert "Terminating" in err.hint and "permission" not in err.hint


def test_no_default_storage_class_is_refused_before_anything_is_written(cli, k8s, project):
    import time

    k8s.without_default_storage_class()  # EKS from 1.30 on
    refused = cli("up", "--target", "kubernetes")
    assert refused.exit_code == 2 and k8s.writes == []
    assert "no default StorageClass" in refused.stderr and "StorageClasses: gp2" in refused.stderr
    assert "[kubernetes].storage_class" in refused.stderr
    # What would have happened (the emulator's truth): the claim stays Pending, its pods never schedule.
    k8s.put(("v1", "namespaces", "", "scratch"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "scratch"}})
    k8s.put(("v1", "persistentvolumeclaims", "scratch", "data"), {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "scratch"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    time.sleep(0.2)
    assert k8s.find("PersistentVolumeClaim", "data")["status"]["phase"] == "Pending"
    assert any("no storage class is set" in e["message"] for e in k8s.objects_of("Event"))

    with open(project / "mlops.toml", "a") as fh:
        fh.write('storage_class = "gp3"\n')
    wrong = cli("up", "--target", "kubernetes")
    assert wrong.exit_code == 2 and "'gp3' does not exist" in wrong.stderr
    (project / "mlops.toml").write_text((project / "mlops.toml").read_text().replace('"gp3"', '"gp2"'))
    _up(cli)
    assert {p["status"]["phase"] for p in k8s.objects_of("PersistentVolumeClaim") if p["metadata"]["namespace"] == "mlops"} == {"Bound"}


def test_up_refuses_a_foreign_cert_manager_unless_told_and_down_leaves_it(cli, k8s):
    import time

    from tests.upstream_bundle import bundle_documents

    for obj in bundle_documents()["cert-manager"]:  # someone else's (newer) cert-manager, installed with kubectl
        if obj["kind"] == "Deployment":
            container = obj["spec"]["template"]["spec"]["containers"][0]
            container["image"] = container["image"].rpartition(":")[0] + ":v1.19.1"
        plural = obj["kind"].lower() + "s"  # right for every kind in cert-manager.yaml
        k8s.put((obj["apiVersion"], plural, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]), obj)
    time.sleep(0.1)
    writes = len(k8s.writes)
    plan = {s["name"]: s for s in _up(cli, "--dry-run")["steps"]}
    assert plan["1. cert-manager"]["action"] == "refused" and "--reuse-existing" in plan["1. cert-manager"]["detail"]
    refused = cli("up", "--target", "kubernetes")
    assert refused.exit_code == 2 and "Deployment cert-manager/cert-manager-webhook" in refused.stderr
    assert "--reuse-existing" in refused.stderr and len(k8s.writes) == writes  # nothing written
    steps = _up(cli, "--reuse-existing")["steps"]
    assert {"name": "1. cert-manager", "action": "reused"}.items() <= next(s for s in steps if s["name"] == "1. cert-manager").items()
    assert "v1.19.1" in k8s.find("Deployment", "cert-manager-webhook")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert cli("down", "--target", "kubernetes", "--purge", "--yes").exit_code == 0
    assert k8s.find("Deployment", "cert-manager-webhook") is not None  # not ours: left alone
    assert k8s.find("Deployment", "kserve-controller-manager") is None


def test_deploy_after_up_points_the_gateway_at_the_inference_service(cli, installed, registry):
    _deploy(cli, "--version", "1")
    command = installed.find("Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--predictor-url") + 1] == "http://sentiment-predictor.mlops.svc.cluster.local"
    # The address the gateway calls is the one KServe reports for the InferenceService.
    assert _isvc(installed)["status"]["address"]["url"] == "http://sentiment-predictor.mlops.svc.cluster.local"
    assert {s["action"] for s in _up(cli)["steps"]} == {"unchanged"}  # deploy and up agree on the gateway


def test_no_secret_value_in_output_at_any_verbosity(cli, installed, monkeypatch):
    """From the shared install, the env password replaces the generated one: -vv shows that update."""
    k8s = installed
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


def _self_signed(host: str) -> tuple[bytes, bytes]:
    """A certificate the way cert-manager's SelfSigned issuer makes one: signed with its own key,
    the Certificate's dnsNames as SANs, not a CA."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@pytest.fixture
def fake_edge(tmp_path):
    """Stands in for the Envoy Gateway listener + gateway: HTTPS only, with a self-signed certificate
    for mlops.local (what cert-manager issues without [kubernetes].tls_issuer); checks basic auth
    against `expected` and answers /predict/batch."""
    import base64
    import ssl

    cert, key = _self_signed("mlops.local")
    (tmp_path / "edge.crt").write_bytes(cert)
    (tmp_path / "edge.key").write_bytes(key)
    state = {"expected": None, "seen": [], "cert": cert, "key": key, "crt_path": tmp_path / "edge.crt",
             "shed": []}  # Retry-After values: the next requests get 503 with it, as an admission limit sheds

    class Handler(QuietHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            auth = self.headers.get("Authorization", "")
            creds = base64.b64decode(auth.removeprefix("Basic ")).decode() if auth.startswith("Basic ") else ""
            state["seen"].append((self.headers.get("Host"), self.path, creds))
            if creds != state["expected"]:
                self.send_json(401, {"error": "unauthorized"})
            elif state["shed"]:
                self.send_json(503, {"error": {"code": "overloaded", "message": "over the latency budget"}},
                               {"Retry-After": state["shed"].pop(0)})
            else:
                self.send_json(200, {"predictions": [{"label": "Positive", "confidence": 0.9, "model_version": "1"}
                                                     for _ in body["texts"]]})

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "edge.crt", tmp_path / "edge.key")
    with http_server(Handler, tls) as url:
        state["address"] = url.removeprefix("https://")
        yield state


def _issue_edge_certificate(k8s, cert: bytes, key: bytes) -> None:
    """What cert-manager does for the edge's Certificate: a kubernetes.io/tls Secret; a SelfSigned
    issuer puts the certificate itself in ca.crt."""
    import base64

    from charts import edge

    data = {"tls.crt": cert, "tls.key": key, "ca.crt": cert}
    k8s.put(("v1", "secrets", "mlops", edge.TLS_SECRET),
            {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": {"name": edge.TLS_SECRET, "namespace": "mlops"},
             "data": {k: base64.b64encode(v).decode() for k, v in data.items()}})


def test_predict_goes_over_https_trusting_the_self_signed_certificate_from_its_secret(cli, installed, project, fake_edge):
    import base64

    with open(project / "mlops.toml", "a") as fh:
        fh.write(f'ingress_address = "{fake_edge["address"]}"\n')
    password = base64.b64decode(installed.find("Secret", "mlops-gateway-auth")["data"]["password"]).decode()
    fake_edge["expected"] = f"admin:{password}"

    # Not issued yet: a clear error naming the Secret, never an unverified request.
    early = cli("predict", "a wonderful film", "--target", "kubernetes")
    assert early.exit_code != 0 and "mlops-edge-tls" in early.stderr and not fake_edge["seen"]

    # Another certificate in the Secret than the listener presents: refused, not trusted blindly.
    other_cert, other_key = _self_signed("mlops.local")
    _issue_edge_certificate(installed, other_cert, other_key)
    untrusted = cli("predict", "a wonderful film", "--target", "kubernetes")
    assert untrusted.exit_code != 0 and "do not trust" in untrusted.stderr and not fake_edge["seen"]

    _issue_edge_certificate(installed, fake_edge["cert"], fake_edge["key"])
    result = cli("--json", "predict", "a wonderful film", "--target", "kubernetes")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["label"] == "Positive"
    assert fake_edge["seen"][-1] == ("mlops.local", "/predict/batch", f"admin:{password}")  # Host picks the listener
    assert password not in result.stdout + result.stderr

    fake_edge["expected"] = "admin:rotated"
    denied = cli("predict", "a wonderful film", "--target", "kubernetes")
    # wrong credentials are the caller's to fix: exit 2 (issue 26 D21)
    assert denied.exit_code == 2 and "answered 401" in denied.stderr and password not in denied.stderr


def test_predict_file_sends_a_batch_the_edge_shed_again_after_retry_after(cli, installed, project, fake_edge,
                                                                          monkeypatch):
    """A 503 + Retry-After through the edge (the gateway's admission limit or the predictor's queue) is
    waited out and the batch sent again, as on local; the file is scored whole."""
    import base64

    from mlops_cli.platform import batch_predict

    waits = []
    monkeypatch.setattr(batch_predict.time, "sleep", waits.append)
    with open(project / "mlops.toml", "a") as fh:
        fh.write(f'ingress_address = "{fake_edge["address"]}"\n')
    _issue_edge_certificate(installed, fake_edge["cert"], fake_edge["key"])
    fake_edge["expected"] = "admin:" + base64.b64decode(
        installed.find("Secret", "mlops-gateway-auth")["data"]["password"]).decode()
    fake_edge["shed"] = ["3", "7"]
    (project / "reviews.csv").write_text("text\n" + "".join(f"good {i}\n" for i in range(100)))
    result = cli("--json", "predict", "--file", str(project / "reviews.csv"), "--target", "kubernetes")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 100 and sorted(waits) == [3.0, 7.0]
    assert len((project / "reviews.scored.csv").read_text().splitlines()) == 101


def test_predict_with_a_real_issuer_trusts_the_configured_ca_bundle_only(cli, installed, project, fake_edge):
    import base64

    password = base64.b64decode(installed.find("Secret", "mlops-gateway-auth")["data"]["password"]).decode()
    fake_edge["expected"] = f"admin:{password}"
    with open(project / "mlops.toml", "a") as fh:
        fh.write(f'ingress_address = "{fake_edge["address"]}"\ntls_issuer = "private-ca"\n')
    # A ClusterIssuer of your own without a bundle: the system trust store, which does not know it.
    refused = cli("predict", "a wonderful film", "--target", "kubernetes")
    assert refused.exit_code != 0 and "do not trust" in refused.stderr and not fake_edge["seen"]

    with open(project / "mlops.toml", "a") as fh:
        fh.write('tls_ca_bundle = "certs/private-ca.pem"\n')  # relative to the project
    missing = cli("predict", "a wonderful film", "--target", "kubernetes")
    assert missing.exit_code == 2 and "tls_ca_bundle" in missing.stderr and not fake_edge["seen"]
    (project / "certs").mkdir()
    (project / "certs" / "private-ca.pem").write_bytes(fake_edge["cert"])
    result = cli("--json", "predict", "a wonderful film", "--target", "kubernetes")
    assert result.exit_code == 0, result.stderr
    assert fake_edge["seen"][-1][1:] == ("/predict/batch", f"admin:{password}")


def test_up_prints_the_https_address_of_the_edge(cli, installed):
    assert _up(cli)["ingress"] == "https://mlops.local"


def test_logs_show_the_newest_pod_of_a_component(cli, installed, project):
    for name, created in (("gateway-old", "2026-11-26T00:00:00Z"), ("gateway-new", "2026-11-26T01:00:00Z")):
        installed.store[("v1", "pods", "mlops", name)] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "mlops", "creationTimestamp": created,
                         "labels": {"app.kubernetes.io/name": "gateway", "app.kubernetes.io/part-of": "mlops"}}}
        installed.pod_logs[name] = "\n".join(f"{name} line {i}" for i in range(10))
    result = cli("logs", "gateway", "--target", "kubernetes", "-n", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"gateway-new line {i}" for i in (7, 8, 9)]
    missing = cli("logs", "drift", "--target", "kubernetes")
    assert missing.exit_code == 1 and "no pods match app.kubernetes.io/name=drift" in missing.stderr
    unknown = cli("logs", "nonsense", "--target", "kubernetes")
    assert unknown.exit_code == 2 and "unknown component" in unknown.stderr


def test_doctor_checks_name_a_missing_kubeconfig(project):
    from mlops_cli.config.loading import load_config
    from mlops_cli.targets.kubernetes import KubernetesTarget

    (project / "mlops.toml").write_text('[kubernetes]\nkubeconfig = "nowhere/kubeconfig"\n')
    checks = KubernetesTarget(load_config()).checks()
    assert checks[0].name == "kubeconfig present" and not checks[0].ok and "KUBECONFIG" in checks[0].fix


def test_doctor_checks_show_the_context(project, k8s):
    from mlops_cli.config.loading import load_config
    from mlops_cli.targets.kubernetes import KubernetesTarget

    checks = KubernetesTarget(load_config()).checks()
    assert [c.ok for c in checks[:3]] == [True, True, True]
    # last, and never blocking: whether the pinned upstream releases are still supported
    assert checks[3].name == "upstream versions supported" and not checks[3].required and len(checks) == 4
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
