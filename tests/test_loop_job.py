"""The closed loop in a cluster (issue 25, item 4): with [loop].schedule set, `mlops render` (and `up`)
gives a CronJob running `mlops loop --once --target kubernetes` in the CLI image, its own ServiceAccount,
a namespaced Role with only what one pass touches, concurrencyPolicy Forbid, credentials from Secrets.
Checked on the rendered objects, and each object against the Kubernetes schemas (kubernetes-validate)."""

from __future__ import annotations

import json

import jsonschema
import kubernetes_validate
import pytest

from mlops_cli.config.loading import load_config

from .schema_support import validate


def _config(project, schedule: str = "1h", extra: str = ""):
    (project / "mlops.toml").write_text(f'[project]\nname = "t"\n[loop]\nschedule = "{schedule}"\n' + extra)
    return load_config()


def _loop_objects(config) -> list[dict]:
    from charts.platform import platform_steps

    [step] = [s for s in platform_steps(config, None, missing_ok=True) if s.key == "loop"]
    return step.objects


def test_without_a_schedule_nothing_of_the_loop_is_rendered(project):
    from charts.platform import platform_steps

    (project / "mlops.toml").write_text('[project]\nname = "t"\n')
    steps = platform_steps(load_config(), None, missing_ok=True)
    assert "loop" not in {s.key for s in steps}
    assert not [o for s in steps for o in s.objects if o["kind"] == "CronJob"]


def test_the_cronjob_runs_the_loop_once_per_schedule_never_two_at_a_time(project):
    from charts.image_refs import image_ref

    config = _config(project, "15m")
    [job] = [o for o in _loop_objects(config) if o["kind"] == "CronJob"]
    spec = job["spec"]
    assert (spec["schedule"], spec["concurrencyPolicy"]) == ("*/15 * * * *", "Forbid")
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mlops-loop" and pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["image"] == image_ref(config, "cli") and container["image"].split(":")[0].endswith("/mlops-cli")
    assert container["command"] == ["python", "-m", "mlops_cli", "--json", "loop", "--once", "--target", "kubernetes"]
    assert container["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
    assert job["metadata"]["namespace"] == config.kubernetes.namespace


def test_credentials_come_from_secrets_and_no_value_is_in_the_manifest(project, monkeypatch):
    monkeypatch.setenv("MLOPS_GATEWAY_PASSWORD", "never-in-a-manifest-4711")
    config = _config(project, "1h", '[kubernetes]\nmlflow_artifacts = "s3://bucket/mlflow"\n')
    objects = _loop_objects(config)
    assert "never-in-a-manifest-4711" not in json.dumps(objects)
    assert not [o for o in objects if o["kind"] == "Secret"]
    [job] = [o for o in objects if o["kind"] == "CronJob"]
    env = {e["name"]: e for e in job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("MLOPS_GATEWAY_USER", "MLOPS_GATEWAY_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"], name
    secret_like = [n for n in env if any(w in n for w in ("PASSWORD", "SECRET", "TOKEN")) and "value" in env[n]]
    assert not secret_like


def test_rbac_is_namespaced_and_holds_only_what_a_pass_touches(project):
    from mlops_cli.targets.kubernetes_deploy import HISTORY_SUFFIX

    config = _config(project)
    objects = _loop_objects(config)
    kinds = [o["kind"] for o in objects]
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    [role] = [o for o in objects if o["kind"] == "Role"]
    [binding] = [o for o in objects if o["kind"] == "RoleBinding"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == config.kubernetes.namespace
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mlops-loop", "namespace": config.kubernetes.namespace}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mlops-loop"}
    rules = {(r["apiGroups"][0], r["resources"][0]): r for r in role["rules"]}
    model = config.serving.model_name
    assert rules[("serving.kserve.io", "inferenceservices")]["resourceNames"] == [model]
    assert rules[("", "configmaps")]["resourceNames"] == [model + HISTORY_SUFFIX]   # the deploy history
    assert rules[("apps", "deployments")]["resourceNames"] == ["gateway"]
    assert set(rules) == {("serving.kserve.io", "inferenceservices"), ("", "configmaps"), ("apps", "deployments"),
                          ("serving.knative.dev", "revisions")}
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"get", "patch"} and "*" not in rule["resources"] + rule["apiGroups"]
    assert rules[("serving.knative.dev", "revisions")]["verbs"] == ["get"]


@pytest.mark.parametrize("k8s_version", ["1.34", "1.35"])
def test_every_loop_object_validates(project, k8s_version):
    for obj in _loop_objects(_config(project, "6h", '[kubernetes]\nmlflow_artifacts = "s3://bucket/mlflow"\n')):
        try:
            validate(obj, k8s_version, {})
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.absolute_path)}")


@pytest.mark.parametrize("every, cron", [("1m", "* * * * *"), ("5m", "*/5 * * * *"), ("30m", "*/30 * * * *"),
                                         ("60m", "0 * * * *"), ("1h", "0 * * * *"), ("6h", "0 */6 * * *"),
                                         ("1d", "0 0 * * *"), ("24h", "0 0 * * *"), ("7d", "0 0 * * 0")])
def test_schedules_become_cron_expressions(every, cron):
    from charts.loop_job import cron_schedule

    assert cron_schedule(every) == cron


@pytest.mark.parametrize("every", ["7m", "90s", "5h", "2d", "45m"])
def test_a_schedule_cron_cannot_keep_is_one_clear_message(project, cli, every):
    _config(project, every)
    result = cli("render", "--target", "kubernetes")
    assert result.exit_code == 2, result.output
    assert f"[loop].schedule = '{every}' cannot be a CronJob schedule" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_cli_image_is_built_when_the_loop_is_scheduled(project):
    from mlops_cli.cloud.images import build_plan

    (project / "mlops.toml").write_text('[project]\nname = "t"\n')
    assert "cli" not in [s.component for s in build_plan(load_config())]
    plan = {s.component: s for s in build_plan(_config(project, "1h"))}
    assert plan["cli"].dockerfile.name == "cli.Dockerfile" and plan["cli"].entrypoint == "mlops_cli.cli.app"


def test_in_the_loops_pod_the_cluster_is_reached_as_its_service_account(tmp_path, monkeypatch):
    """The CronJob's pod has no kubeconfig: as kubectl does in a pod, the kubernetes target then uses the
    ServiceAccount token and CA the kubelet mounts, and the service env it sets (client-go
    tools/clientcmd/merged_client_builder.go: in-cluster when no kubeconfig is found). A kubeconfig, when
    there is one, still wins; a pod without its token is one clear message. tests/test_real_controlplane.py
    runs the same against the real API server as the loop's ServiceAccount."""
    import certifi

    from mlops_cli.adapters import kube_apply
    from mlops_cli.adapters.kube_apply import KubeCluster
    from mlops_cli.common.errors import PreflightError

    mounted = tmp_path / "serviceaccount"
    mounted.mkdir()
    (mounted / "token").write_text("the-pods-token")
    (mounted / "ca.crt").write_text(open(certifi.where()).read())
    monkeypatch.setattr(kube_apply, "IN_CLUSTER_CREDENTIALS", mounted)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cluster = KubeCluster.connect("", "", "mlops")
    assert (cluster.context, cluster.server) == ("in-cluster", "https://10.0.0.1:443")
    assert cluster.api.configuration.auth_settings()["BearerToken"]["value"].lower() == "bearer the-pods-token"

    (mounted / "token").unlink()
    with pytest.raises(PreflightError) as no_token:
        KubeCluster.connect("", "", "mlops")
    assert "ServiceAccount credentials cannot be read" in no_token.value.message

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
                          "clusters: [{name: k, cluster: {server: 'https://192.0.2.1:6443'}}]\nusers: [{name: u, user: {token: t}}]\n")
    assert KubeCluster.connect(str(kubeconfig), "", "mlops").server == "https://192.0.2.1:6443"


def test_a_refusal_in_the_loops_pod_blames_its_role_not_a_missing_cluster_admin_context(tmp_path, monkeypatch):
    """In the CronJob's pod the client is the ServiceAccount, with no context to switch to: a 403 from RBAC means
    the Role we render (charts/loop_job.py) does not grant it, and the hint says so and names the ServiceAccount,
    read from the `sub` claim of its token (k8s.io/kubernetes pkg/serviceaccount/claims.go: system:serviceaccount:
    <namespace>:<name>); a kubeconfig user is still told to use a cluster-admin context. The 403 is the Status
    the RBAC authorizer's refusal becomes (k8s.io/apiserver pkg/endpoints/handlers/responsewriters/errors.go
    forbiddenMessage); tests/test_real_controlplane.py gets a real one with a real token."""
    import base64
    import ssl

    from charts.loop_job import NAME
    from mlops_cli.adapters import kube_apply
    from mlops_cli.adapters.kube_apply import KubeApiError, KubeCluster
    from tests.controlplane_certs import Authority, write_kubeconfig
    from tests.support import QuietHandler, http_server

    user = f"system:serviceaccount:ml:{NAME}"

    class RbacRefuses(QuietHandler):
        def do_GET(self):
            self.send_json(403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                                 "message": f'deployments.apps "mlflow" is forbidden: User "{user}" cannot get resource '
                                            '"deployments" in API group "apps" in the namespace "ml"'})

    def refusal(cluster: KubeCluster) -> str:
        with pytest.raises(KubeApiError) as refused:
            cluster.get({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "mlflow", "namespace": "ml"}})
        assert refused.value.status == 403 and user in refused.value.message
        return refused.value.hint

    mounted = tmp_path / "serviceaccount"
    mounted.mkdir()
    ca = Authority(mounted)  # its ca.crt is the pod's, next to the token
    serving = ca.issue("apiserver", common_name="kube-apiserver", hosts=("127.0.0.1",), directory=tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(serving.cert, serving.key)
    claims = base64.urlsafe_b64encode(json.dumps({"iss": "https://kubernetes.default.svc", "sub": user}).encode()).decode()
    token = f"eyJhbGciOiJSUzI1NiJ9.{claims.rstrip('=')}.signature"
    monkeypatch.setattr(kube_apply, "IN_CLUSTER_CREDENTIALS", mounted)
    monkeypatch.setenv("HOME", str(tmp_path))
    with http_server(RbacRefuses, tls) as url:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", url.rsplit(":", 1)[1])
        (mounted / "token").write_text(token)
        hint = refusal(KubeCluster.connect("", "", "ml"))
        assert f"ServiceAccount ml/{NAME}" in hint and "charts/loop_job.py" in hint and "`mlops render`" in hint, hint
        assert "cluster-admin" not in hint and "Role" in hint, hint
        (mounted / "token").write_text("not-a-jwt")  # still in a pod: still its Role, the ServiceAccount unnamed
        assert "this pod's ServiceAccount" in refusal(KubeCluster.connect("", "", "ml"))

        # the same token through a kubeconfig: there is a context to switch to
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url, ca, token, "loop")
        assert "use a cluster-admin context" in refusal(KubeCluster.connect(str(kubeconfig), "", "ml"))


def _pod_env(job: dict, secret_values: dict[str, str]) -> dict[str, str]:
    """The container's env as the kubelet sets it: values, and each secretKeyRef resolved (by the kubelet,
    with the node's credentials: the pod's ServiceAccount reads no Secret for it)."""
    env = {}
    for e in job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]:
        env[e["name"]] = e["value"] if "value" in e else secret_values[e["name"]]
    return env


def test_in_the_loops_pod_the_canary_probe_reaches_the_gateways_service_and_reads_no_secret(project, monkeypatch, tmp_path):
    """The pod has no mlops.toml: [canary] (probe_rps, the judge's Prometheus) and [loop] reach it in its env,
    or the watch would never probe and would look for Prometheus on the pod's own loopback. Its probe
    (canary_judge.py: target.predict) goes to the gateway's Service: the edge's self-signed certificate is
    in a Secret its Role refuses (tests/test_real_controlplane.py asks the real RBAC authorizer), so through
    the edge every probe failed and the judge saw no canary requests. Nothing of the probe touches the API
    (the stand-in cluster fails any call); the gateway, which checks basic auth itself (services/gateway.py
    _Edge), gets the credentials the kubelet put in the env; TLS verification is never turned off. The
    request reaches a stand-in for the gateway through HTTP_PROXY (httpx's trust_env), which sees the URL."""
    import base64

    import httpx

    from mlops_cli.monitoring.canary_watch import PROBE_TEXT
    from mlops_cli.targets.kubernetes import KubernetesTarget
    from tests.support import QuietHandler, http_server

    config = _config(project, "15m", '[canary]\nprobe_rps = 0.5\nprometheus_url = "http://localhost:9090"\n'
                                     '[kubernetes]\nnamespace = "ml"\n[data]\nremote = "s3://bucket/dvc"\n'
                                     '[feedback]\naccuracy_floor = 0.85\n')
    [job] = [o for o in _loop_objects(config) if o["kind"] == "CronJob"]
    env = _pod_env(job, {"MLOPS_GATEWAY_USER": "admin", "MLOPS_GATEWAY_PASSWORD": "probe-4711"})
    pod_dir = tmp_path / "pod"
    pod_dir.mkdir()
    monkeypatch.chdir(pod_dir)   # the image's workingDir: no mlops.toml there or above
    in_pod = load_config(env=env)
    assert in_pod.canary.probe_rps == 0.5 and in_pod.loop.schedule == "15m"
    assert in_pod.canary.prometheus_url == "http://prometheus.ml.svc.cluster.local:9090"  # not the laptop's port-forward
    assert in_pod.kubernetes.predict_via == "service"
    # its retrain pulls the champion's data from the remote (loop/champion_data.py); the floor fires the trigger
    assert (in_pod.data.remote, in_pod.feedback.accuracy_floor) == ("s3://bucket/dvc", 0.85)

    class NoApi:
        def __getattr__(self, name):
            raise AssertionError(f"the loop's probe used the Kubernetes API ({name})")

    seen = []

    class Gateway(QuietHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            auth = self.headers.get("Authorization", "")
            creds = base64.b64decode(auth.removeprefix("Basic ")).decode() if auth.startswith("Basic ") else ""
            seen.append((self.path, self.headers.get("Host"), creds))
            if creds != "admin:probe-4711":
                self.send_json(401, {"error": {"code": "unauthorized", "message": "missing or wrong credentials"}})
            else:
                self.send_json(200, {"predictions": [{"label": "Positive", "confidence": 0.9, "model_version": "2"}
                                                     for _ in body["texts"]]})

    verifies = []
    real_client = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda **kw: verifies.append(kw.get("verify", True)) or real_client(**kw))
    for name in ("MLOPS_GATEWAY_USER", "MLOPS_GATEWAY_PASSWORD"):
        monkeypatch.setenv(name, env[name])
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with http_server(Gateway) as url:
        monkeypatch.setenv("HTTP_PROXY", url)
        predictions = KubernetesTarget(in_pod, cluster=NoApi()).predict([PROBE_TEXT])
    assert predictions[0]["model_version"] == "2"
    # port 80: the Service's (charts/gateway.py SERVICE_PORT), which httpx leaves out of the URL as the default
    assert seen == [("http://gateway.ml.svc.cluster.local/predict/batch", "gateway.ml.svc.cluster.local", "admin:probe-4711")]
    assert verifies and False not in verifies


def test_the_namespaces_network_policies_let_the_loops_probe_reach_the_gateway_but_not_the_edges_proxy(project):
    """Why the probe goes to the gateway's Service and not to the edge (evaluated with tests/netpol.py over the
    namespace's policies and the loop's): the loop's pod may reach the gateway's pods on 8080 and Prometheus,
    and the gateway lets it in; an Envoy proxy pod listens on 10443 for the edge's 443 (Envoy Gateway
    internal/gatewayapi/helpers.go servicePortToContainerPort: a privileged port + 10000), which the loop's
    egress does not allow, so a request to the edge from inside would be dropped once a CNI evaluates it at
    the proxy pod. Other pods of ours still cannot call the gateway."""
    from charts import gateway, loop_job, network_policies, prometheus
    from charts.objects import labels
    from tests.netpol import Pod, allowed

    config = _config(project, "15m", '[kubernetes]\nnamespace = "ml"\n')
    policies = [*network_policies.objects(config), *loop_job.network_policies(config)]
    loop, ours = Pod("ml", labels("loop")), (lambda component: Pod("ml", labels(component)))
    assert allowed(policies, loop, ours("gateway"), gateway.PORT)
    assert allowed(policies, loop, ours("prometheus"), prometheus.PORT)
    envoy = Pod("envoy-gateway-system", {"app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "proxy"})
    assert not allowed(policies, loop, envoy, 10443)
    assert not allowed(policies, ours("drift"), ours("gateway"), gateway.PORT)


def _pod_specs(obj: dict) -> dict | None:
    spec = obj.get("spec") or {}
    if obj["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return (spec.get("template") or {}).get("spec")


@pytest.mark.parametrize("mode", ["ReadWriteOnce", "ReadWriteMany"])
def test_every_pod_that_mounts_the_prediction_log_goes_where_its_volume_can_attach(project, mode):
    """A ReadWriteOnce volume is mounted read-write by a single node (kubernetes.io/docs/concepts/storage/
    persistent-volumes/#access-modes): a pod on another node hangs in ContainerCreating (Multi-Attach error).
    The gateways were pinned to the drift pod's node; the loop's CronJob, which mounts the same PVC for the
    feedback, was not, so on a cluster of several nodes its pass could never start."""
    from charts.drift import PREDICTIONS_PVC
    from charts.objects import selector
    from charts.platform import platform_steps

    config = _config(project, "15m", f'[kubernetes]\npredictions_access_mode = "{mode}"\n')
    mounting = {}
    for step in platform_steps(config, None, missing_ok=True):
        for obj in step.objects:
            pod = _pod_specs(obj)
            claims = {(v.get("persistentVolumeClaim") or {}).get("claimName") for v in (pod or {}).get("volumes", [])}
            if PREDICTIONS_PVC in claims:
                mounting[obj["metadata"]["name"]] = pod
    assert {"drift", "gateway", "mlops-loop"} <= set(mounting)
    for name, pod in mounting.items():
        if mode == "ReadWriteMany" or name == "drift":
            assert "podAffinity" not in pod.get("affinity", {}), name
            continue
        [term] = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term == {"labelSelector": {"matchLabels": selector("drift")}, "topologyKey": "kubernetes.io/hostname"}, name
