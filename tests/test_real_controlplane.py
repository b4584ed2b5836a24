"""Our rendered objects against the REAL Kubernetes 1.35 control plane (tests/controlplane.py): what the
API server admits, defaults and refuses is decided by kube-apiserver itself, and what follows from a
Deployment (ReplicaSet, pods admitted or refused by Pod Security) by kube-controller-manager.
"""

from __future__ import annotations

import time

import pytest
import yaml

from tests.controlplane import BUILD_SCRIPT, dumps, events_of
from tests.controlplane_certs import write_kubeconfig

KUBECTL = "kubectl"  # `kubectl apply --server-side --force-conflicts -f DIR/`, as a user applies `mlops render`


def _rendered(project, cli, *args, out="out"):
    result = cli("render", "--target", "kubernetes", *args, "-o", out)
    assert result.exit_code == 0, result.stderr
    index = yaml.safe_load((project / out / "index.txt").read_text())
    return [o for name in index["files"] for o in yaml.safe_load_all((project / out / name).read_text()) if o]


def _cluster(plane, namespace="default"):
    from mlops_cli.adapters.kube_apply import KubeCluster

    return KubeCluster.connect(str(plane.kubeconfig), "", namespace)


def _condition(obj, kind):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def _wait(what, fetch, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = fetch()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_control_plane_is_real(control_plane):
    """Health and version come from the running kube-apiserver, and RBAC refuses a user with no binding."""
    from mlops_cli.adapters.kube_apply import KubeApiError, KubeCluster

    cluster = _cluster(control_plane)
    version = cluster.request("GET", "/version")
    assert (version["major"], version["minor"]) == ("1", "35"), version
    # stamped as Kubernetes' release build does (scripts/build-controlplane.sh KUBE_LDFLAGS): clients such as
    # Knative's controllers parse it and refuse to start on the unstamped "v0.0.0-master+$Format:%H$"
    pinned = next(line.split()[1] for line in (BUILD_SCRIPT.parent.parent / "controlplane/kubernetes/go.mod")
                  .read_text().splitlines() if line.strip().startswith("k8s.io/kubernetes v"))
    assert version["gitVersion"] == pinned, version
    # the ServiceAccount controller (kube-controller-manager) makes `default` in a new namespace
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rbac-check"}})
    _wait("default ServiceAccount", lambda: cluster.get(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "rbac-check"}}))
    nobody = control_plane.ca.issue("nobody", common_name="nobody")
    config = write_kubeconfig(control_plane.workdir / "nobody.kubeconfig", control_plane.server, control_plane.ca, nobody, "nobody")
    with pytest.raises(KubeApiError) as refused:
        KubeCluster.connect(str(config), "", "default").request("GET", "/api/v1/namespaces/rbac-check/secrets")
    assert refused.value.status == 403 and 'User "nobody" cannot list resource "secrets"' in str(refused.value)


def test_render_output_applies_server_side_and_pod_security_admits_our_pods(control_plane, kserve, project, cli,
                                                                            monkeypatch):
    """Issue 22 item 3: every object `mlops render --target kubernetes --deploy` writes, the InferenceService
    included, is server-side applied (each one sent, none skipped as unchanged) to the control plane that
    `mlops up` installed (the `kserve` fixture): with the CRDs of every kind we render (cert-manager's,
    Gateway API's and Envoy Gateway's too) and the real admission webhooks of KServe (its InferenceService
    validator, our ClusterStorageContainer against its CRD) and Knative running, and no error.
    The namespace is Pod Security `restricted`, so the real PodSecurity admission judges each pod that the
    real ReplicaSet controller creates for our Deployments (a refusal shows as the ReplicaSet's
    ReplicaFailure condition / FailedCreate event)."""
    from types import SimpleNamespace

    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.adapters.kube_apply import KubeApiError
    from mlops_cli.registry import versions as registry

    # a registered version, as tests/test_real_kserve.py has it (the registry is not what is tested here)
    monkeypatch.setattr(registry, "resolve_version", lambda config, version=None, alias=None: registry.ModelRef(
        name="review-sentiment", version=version or "3", run_id="r", source="models:/m-0123",
        artifact_uri="s3://bucket/mlflow/1/models/m-0123/artifacts", tags={"onnx_int8": "runs:/r/onnx-int8"}))
    monkeypatch.setattr(mlflow_tracking, "get_run", lambda config, run_id: SimpleNamespace(
        info=SimpleNamespace(artifact_uri=f"s3://bucket/mlflow/1/{run_id}/artifacts")))
    (project / "mlops.toml").write_text('[project]\nname = "t"\n[kubernetes]\nmlflow_artifacts = "s3://bucket/mlflow"\n')
    objects = _rendered(project, cli) + _rendered(project, cli, "--deploy", "--version", "3", out="deploy")
    assert {"InferenceService", "ClusterStorageContainer", "Certificate", "Gateway", "HTTPRoute",
            "SecurityPolicy"} <= {o["kind"] for o in objects}
    namespace = next(o for o in objects if o["kind"] == "Namespace")["metadata"]["name"]
    cluster = _cluster(control_plane, namespace)
    refused = []
    for obj in objects:
        try:  # a kind the cluster does not serve is refused here too (normalise asks discovery)
            obj = cluster.normalise(obj)
            cluster.request("PATCH", cluster.path(obj), query=[("fieldManager", KUBECTL), ("force", "true")], body=obj,
                            content_type="application/apply-patch+yaml")
        except KubeApiError as exc:
            refused.append(str(exc))
    assert refused == [], "\n".join(refused)
    isvc = next(o for o in objects if o["kind"] == "InferenceService")
    assert cluster.get(cluster.normalise(isvc))["metadata"]["uid"]  # stored: KServe's webhooks admitted it

    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    with pytest.raises(KubeApiError) as no:
        cluster.apply(bare)
    assert no.value.status == 403 and 'violates PodSecurity "restricted:latest"' in str(no.value), str(no.value)

    deployments = [o for o in objects if o["kind"] == "Deployment" and o["metadata"].get("namespace") == namespace]
    assert deployments
    # the control: a Deployment with the bare pod's template is refused, and that is seen where we look
    control = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bare", "namespace": namespace},
               "spec": {"selector": {"matchLabels": {"app": "bare"}},
                        "template": {"metadata": {"labels": {"app": "bare"}}, "spec": bare["spec"]}}}
    cluster.apply(control)  # PodSecurity only warns on workload objects; it refuses their pods
    failures = _pod_failures(cluster, namespace, [control])
    assert list(failures) == ["bare"] and 'violates PodSecurity "restricted:latest"' in failures["bare"][0], failures
    assert _pod_failures(cluster, namespace, deployments) == {}


def _not_stored(live, want, at=""):
    """Where a field of `want` lacks its value in `live`, lists item by item (the server adds its defaults
    around ours). A zero value we set ("", 0, false) may be absent: the API's types drop it (omitempty)."""
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return [at or "."]
        return [d for k, v in want.items() for d in _not_stored(live.get(k), v, f"{at}.{k}")]
    if isinstance(want, list):
        if not isinstance(live, list) or len(live) != len(want):
            return [at]
        return [d for i, (lv, wv) in enumerate(zip(live, want)) for d in _not_stored(lv, wv, f"{at}[{i}]")]
    return [] if live == want or (live is None and want in ("", 0, False)) else [f"{at}: {want!r} stored as {live!r}"]


def _pod_failures(cluster, namespace, deployments):
    """Deployment name -> why its ReplicaSet could not create pods (condition message, then events)."""
    failures = {}
    for dep in deployments:
        name = dep["metadata"]["name"]
        revision = "deployment.kubernetes.io/revision"

        def current():  # the ReplicaSet of the Deployment's current template (an earlier apply may have made another)
            live = cluster.get({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace}})
            if not live or (live.get("status") or {}).get("observedGeneration") != live["metadata"]["generation"]:
                return []
            want_rev = (live["metadata"].get("annotations") or {}).get(revision)
            return [rs for rs in cluster.list_objects("apps/v1", "ReplicaSet", namespace)
                    if any(ref["name"] == name for ref in rs["metadata"].get("ownerReferences", []))
                    and (rs["metadata"].get("annotations") or {}).get(revision) == want_rev]

        sets = _wait(f"ReplicaSet of {name}", current)
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", **sets[0]}

        def settled():
            live = cluster.get(rs)
            pods = [p for p in cluster.list_objects("v1", "Pod", namespace)
                    if any(r["uid"] == live["metadata"]["uid"] for r in p["metadata"].get("ownerReferences", []))]
            return (live, pods) if _condition(live, "ReplicaFailure") or len(pods) >= want(live) else None

        def want(live):  # ours, or more: the gateway's count is its HPA's (charts/gateway.py renders no replicas,
            # and the real HPA controller raises it to minReplicas at its next sync, sooner or later in this test)
            return max(dep["spec"].get("replicas", 1), live["spec"].get("replicas", 0))

        try:
            live, pods = _wait(f"pods of {name}", settled)
        except AssertionError as exc:  # say why: the ReplicaSet's events and its status
            raise AssertionError(f"{exc}: {events_of(cluster, namespace, 'ReplicaSet', rs['metadata']['name'])} "
                                 f"{dumps(cluster.get(rs).get('status'))}") from None
        failure = _condition(live, "ReplicaFailure")
        if failure:
            failures[name] = [failure["message"], *events_of(cluster, namespace, "ReplicaSet", rs["metadata"]["name"])]
        else:
            assert len(pods) == want(live), dumps(live)
    return failures


def test_without_go_the_build_says_what_to_install(tmp_path):
    """A machine without Go fails `make controlplane` (and so `make test`) with one line, not a skip."""
    import shutil
    import subprocess

    tools = tmp_path / "bin"  # a PATH with what the script uses before it looks for Go, and no go
    tools.mkdir()
    for tool in ("bash", "dirname", "sed", "sort", "tail", "head", "printf"):
        (tools / tool).symlink_to(shutil.which(tool))
    done = subprocess.run([str(tools / "bash"), str(BUILD_SCRIPT)], capture_output=True, text=True,
                          env={"PATH": str(tools), "HOME": str(tmp_path)})
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: the test control plane is built with Go >= 1.2") and "install Go" in line, line


def test_the_loops_cronjob_is_stored_as_rendered_and_its_service_account_may_do_what_a_pass_does_and_no_more(
        control_plane, platform, monkeypatch, tmp_path):
    """Issue 25 item 4 on the real API server. The step `mlops up` adds with [loop].schedule set (its
    ServiceAccount, Role, RoleBinding, CronJob and NetworkPolicies: charts/loop_job.py) is applied as `up`
    applies a step and stored as rendered (batch/v1 CronJob validation: k8s.io/kubernetes
    pkg/apis/batch/validation ValidateCronJobSpec). The job's pod passes PodSecurity `restricted` and the
    ServiceAccount admission, which looks the ServiceAccount up and mounts its token where `mlops loop`
    reads it, the pod's automountServiceAccountToken winning over the ServiceAccount's
    (plugin/pkg/admission/serviceaccount/admission.go shouldAutomount): a server-side dry run, admission
    runs and nothing is stored. Then as that ServiceAccount, in-cluster as the pod is (a TokenRequest
    token, the env of the stored CronJob): the kubernetes target's reads of one pass go through, the real
    RBAC authorizer allows exactly the get/patch a pass does (SelfSubjectAccessReview; kubernetes_deploy.py:
    get/apply of the InferenceService and of its history ConfigMap, get/apply of the gateway Deployment in
    _point_gateway; kubernetes_rollout.py: get of Revisions) and refuses the rest: Secrets, other objects,
    creating pods or bindings, anything cluster-wide. The canary probe of a pass goes out reading no Secret."""
    from charts import loop_job
    from charts.loop_job import NAME
    from charts.platform import Step
    from mlops_cli.adapters import kube_apply
    from mlops_cli.adapters.kube_apply import KubeApiError
    from mlops_cli.common.progress import SILENT
    from mlops_cli.config.loading import load_config
    from mlops_cli.monitoring.canary_watch import PROBE_TEXT
    from mlops_cli.targets.kubernetes import KubernetesTarget
    from mlops_cli.targets.kubernetes_deploy import HISTORY_SUFFIX
    from tests.support import QuietHandler, http_server

    monkeypatch.setenv("MLOPS_LOOP__SCHEDULE", "15m")
    monkeypatch.setenv("MLOPS_CANARY__PROBE_RPS", "0.5")   # the pass's canary watch probes: its target.predict below
    config = load_config(platform)
    ns = config.kubernetes.namespace
    admin = _cluster(control_plane, ns)
    # the step charts/platform.py adds with a schedule (tests/test_loop_job.py), applied as `up` applies each
    # step; not a whole `up`: rendering the platform's upstream files again costs a minute here
    step = Step("loop", "closed loop", loop_job.objects(config))
    results = KubernetesTarget(config, admin)._apply_step(step, SILENT)
    assert {r.action for r in results} <= {"create", "unchanged"} and len(results) == 8, results
    for obj in step.objects:  # every field we rendered has our value in what the server stored
        assert _not_stored(admin.get(obj), admin.normalise(obj)) == [], f"{obj['kind']} {obj['metadata']['name']}"
    job = admin.get({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": NAME, "namespace": ns}})
    assert job["spec"]["schedule"] == "*/15 * * * *" and job["spec"]["concurrencyPolicy"] == "Forbid", dumps(job)

    # the pod the Job controller would create from this template, judged by the real admission chain
    template = job["spec"]["jobTemplate"]["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "loop-check", "namespace": ns, **template["metadata"]},
           "spec": template["spec"]}
    admitted = admin.request("POST", f"/api/v1/namespaces/{ns}/pods", query=[("dryRun", "All")], body=pod)
    mounts = {m["mountPath"] for m in admitted["spec"]["containers"][0]["volumeMounts"]}
    assert str(kube_apply.IN_CLUSTER_CREDENTIALS) in mounts, mounts  # automountServiceAccountToken: the pod's wins
    loose = {**pod, "spec": {**pod["spec"], "securityContext": {}}}  # the control: not `restricted` is refused
    loose["spec"]["containers"] = [{k: v for k, v in c.items() if k != "securityContext"} for c in pod["spec"]["containers"]]
    with pytest.raises(KubeApiError) as no:
        admin.request("POST", f"/api/v1/namespaces/{ns}/pods", query=[("dryRun", "All")], body=loose)
    assert no.value.status == 403 and 'violates PodSecurity "restricted:latest"' in str(no.value), str(no.value)

    # in the pod: no kubeconfig, the kubelet's service env and the ServiceAccount's token and CA
    token = admin.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{NAME}/token", body={
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
    mounted = tmp_path / "serviceaccount"
    mounted.mkdir()
    (mounted / "token").write_text(token["status"]["token"])
    (mounted / "ca.crt").write_bytes(control_plane.ca.cert.read_bytes())
    monkeypatch.setattr(kube_apply, "IN_CLUSTER_CREDENTIALS", mounted)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    # As the kubelet sets it: a secretKeyRef resolved; an empty value is stored without its key (EnvVar.Value is
    # `json:"value,omitempty"`, k8s.io/api core/v1 types.go) and set as "".
    env = {e["name"]: "from-a-secret" if "valueFrom" in e else e.get("value", "")
           for e in template["spec"]["containers"][0]["env"]}
    env.update(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=str(control_plane.port))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = load_config(env=env)
    target = KubernetesTarget(config)
    assert target.cluster.context == kube_apply.IN_CLUSTER_CONTEXT
    assert config.canary.probe_rps == 0.5 and config.kubernetes.predict_via == "service"  # from the CronJob's env

    # what one pass reads through the target (kubernetes_deploy.py, kubernetes_rollout.py): allowed (a 403 raises)
    target.cluster.get(target._isvc_identity())
    assert target._history() is not None
    gateway = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gateway", "namespace": ns}}
    assert target.cluster.get(gateway)["metadata"]["name"] == "gateway"
    assert target._rollouts().revision_version("no-such-revision") == ""
    model, history = config.serving.model_name, config.serving.model_name + HISTORY_SUFFIX
    needed = [("get", "serving.kserve.io", "inferenceservices", model, ns), ("patch", "serving.kserve.io", "inferenceservices", model, ns),
              ("get", "", "configmaps", history, ns), ("patch", "", "configmaps", history, ns),
              ("get", "apps", "deployments", "gateway", ns), ("patch", "apps", "deployments", "gateway", ns),
              ("get", "serving.knative.dev", "revisions", "any-revision", ns)]
    refused = [("get", "", "secrets", "mlops-edge-tls", ns), ("list", "", "secrets", "", ns),
               ("get", "", "secrets", "", "kube-system"), ("delete", "", "namespaces", ns, ""),
               ("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", ""),
               ("create", "rbac.authorization.k8s.io", "rolebindings", "", ns), ("create", "", "pods", "", ns),
               ("create", "batch", "jobs", "", ns), ("patch", "batch", "cronjobs", NAME, ns),
               ("patch", "apps", "deployments", "mlflow", ns), ("patch", "serving.kserve.io", "inferenceservices", "other", ns),
               ("delete", "serving.kserve.io", "inferenceservices", model, ns), ("create", "", "configmaps", "", ns),
               ("patch", "serving.kserve.io", "inferenceservices", model, "default"), ("list", "", "pods", "", "")]

    def allowed(verb, group, resource, name, namespace):
        review = target.cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": {
                "verb": verb, "group": group, "resource": resource, "name": name, "namespace": namespace}}})
        return review["status"].get("allowed", False)

    assert [n for n in needed if not allowed(*n)] == []
    assert [r for r in refused if allowed(*r)] == []
    # and for real, as the ServiceAccount: a server-side apply to the gateway (a dry run, a field manager of
    # its own: nothing changes) goes through; the edge's TLS key and a cluster-wide delete are refused
    target.cluster.request("PATCH", target.cluster.path(gateway), body={k: gateway[k] for k in ("apiVersion", "kind", "metadata")},
                           query=[("fieldManager", "loop-check"), ("dryRun", "All")], content_type="application/apply-patch+yaml")
    with pytest.raises(KubeApiError) as secret:
        target.cluster.get({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mlops-edge-tls", "namespace": ns}})
    assert secret.value.status == 403 and f'"system:serviceaccount:{ns}:{NAME}" cannot get resource "secrets"' in str(secret.value)
    # no context to switch to in the pod: the hint blames the Role we render, naming the ServiceAccount its real token names
    assert f"ServiceAccount {ns}/{NAME}" in secret.value.hint and "charts/loop_job.py" in secret.value.hint, secret.value.hint
    with pytest.raises(KubeApiError) as delete:
        target.cluster.request("DELETE", f"/api/v1/namespaces/{ns}", query=[("dryRun", "All")])
    assert delete.value.status == 403, str(delete.value)

    # the canary watch's probe as this ServiceAccount (canary_judge.py: target.predict): it reads no Secret (the
    # edge's certificate was one, refused above: every probe failed) and goes to the gateway's Service, here a
    # stand-in reached through HTTP_PROXY (no cluster DNS on this host) that answers as the gateway does
    seen = []

    class Gateway(QuietHandler):
        def do_POST(self):
            seen.append(self.path)
            if not self.headers.get("Authorization", "").startswith("Basic "):  # the gateway's _Edge: 401
                self.send_json(401, {"error": {"code": "unauthorized", "message": "missing or wrong credentials"}})
            else:
                self.send_json(200, {"predictions": [{"label": "Positive", "confidence": 0.9, "model_version": "2"}]})

    for name in ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with http_server(Gateway) as url:
        monkeypatch.setenv("HTTP_PROXY", url)
        assert target.predict([PROBE_TEXT])[0]["model_version"] == "2"
    assert seen == [f"http://gateway.{ns}.svc.cluster.local/predict/batch"]
