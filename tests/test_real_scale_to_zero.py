"""Scale to zero on the REAL control plane (issue 22 item 7): what Knative Serving v1.21.2's real controller
writes into a predictor revision's Deployment once `mlops up` has configured it, and what our Prometheus
scrape config makes of the real pods, decided by Prometheus's own relabelling (Debian's `prometheus`).
Debian builds it without `kubernetes_sd_configs` ("field kubernetes_sd_configs not found"), so the
targets that discovery would hand it are made here from the pods the API server lists, as
prometheus/prometheus v0.310.0 discovery/kubernetes/pod.go makes them, and given to it as `file_sd`.

The platform is installed by `mlops up` (the `kserve` fixture, tests/conftest.py); our InferenceService is
applied as `mlops deploy` applies it; KServe's real manager makes the Knative Service, Knative's real
controller the Revision and its Deployment, the real ReplicaSet controller the pods, kwok marks them
Running with this host's address (tests/controlplane_kwok.py). No queue-proxy runs here (no container
runtime): what it serves on 9091 is the source's (knative/serving v0.48.2 pkg/queue/sharedmain/otel.go),
checked in tests/test_scale_to_zero.py; here, that Knative hands it our setting and that the port it
declares is the one Prometheus scrapes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import httpx
import pytest
import yaml

from tests.controlplane import dumps
from tests.support import free_port

KNATIVE = "serving.knative.dev/v1"


def _cluster(plane):
    from mlops_cli.adapters.kube_apply import KubeCluster

    return KubeCluster.connect(str(plane.kubeconfig), "", "default")


def _wait(what, fetch, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = fetch()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def predictor(control_plane, kserve, platform):
    """Our InferenceService of version 1 (artifacts on MLflow's volume) applied to the installed platform;
    returns (config, the revision's Deployment as Knative's controller wrote it, its Running pods)."""
    from charts.inference_service import render
    from mlops_cli.config.loading import load_config

    config = load_config(str(platform), env={})
    cluster = _cluster(control_plane)
    isvc = render(config, version="1", source_uri="mlflow-artifacts:/1/models/m-1/artifacts")
    cluster.apply(isvc)
    ns = config.kubernetes.namespace

    def revision_deployment():
        revisions = cluster.list_objects(KNATIVE, "Revision", ns)
        if not revisions:
            return None
        name = revisions[-1]["metadata"]["name"]
        return cluster.list_objects("apps/v1", "Deployment", ns, f"serving.knative.dev/revision={name}")

    (deployment,) = _wait("the revision's Deployment (Knative's controller)", revision_deployment)
    selector = f"serving.knative.dev/revision={deployment['metadata']['labels']['serving.knative.dev/revision']}"
    pods = _wait("a Running predictor pod (kwok)", lambda: [
        p for p in cluster.list_objects("v1", "Pod", ns, selector) if (p.get("status") or {}).get("phase") == "Running"
        and p["status"].get("podIP")])
    yield config, deployment, pods
    cluster.delete(isvc)


def test_knatives_controller_gives_queue_proxy_our_request_metrics_setting(control_plane, predictor):
    """config-observability as `mlops up` applied it (through Knative's real config webhook) reaches
    queue-proxy as the revision's Deployment carries it: OBSERVABILITY_CONFIG's requestMetrics protocol
    `prometheus` (pkg/reconciler/revision/resources/queue.go, json of pkg/observability/config.go), beside
    the port Knative declares for it, `http-usermetric` 9091. And no periodSeconds on our readiness probe
    reaches queue-proxy as 0, which makes it probe every 50 ms (pkg/queue/readiness/probe.go)."""
    _, deployment, _ = predictor
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    queue = containers["queue-proxy"]
    env = {e["name"]: e.get("value") for e in queue["env"]}
    observability = json.loads(env["OBSERVABILITY_CONFIG"])
    assert observability["requestMetrics"]["protocol"] == "prometheus", env["OBSERVABILITY_CONFIG"]
    assert {"name": "http-usermetric", "containerPort": 9091, "protocol": "TCP"} in queue["ports"], dumps(queue["ports"])
    probe = json.loads(env["SERVING_READINESS_PROBE"])
    assert probe.get("periodSeconds", 0) == 0 and probe["httpGet"]["path"] == "/v2/health/ready", probe


def pod_target_groups(pods):
    """What kubernetes_sd (role pod) hands the scrape manager for these pods (discovery/kubernetes/pod.go
    buildPod, podLabels, addObjectMetaLabels): for each declared container port a target podIP:port with
    the container's and the port's labels, beside the pod's name, IP, phase, namespace and labels (a
    label's name sanitised: strutil.SanitizeLabelName, any character outside [a-zA-Z0-9_] becomes _)."""
    groups = []
    for pod in (p for p in pods if (p.get("status") or {}).get("podIP")):
        meta, status = pod["metadata"], pod["status"]
        labels = {"__meta_kubernetes_namespace": meta["namespace"], "__meta_kubernetes_pod_name": meta["name"],
                  "__meta_kubernetes_pod_ip": status["podIP"], "__meta_kubernetes_pod_phase": status.get("phase", ""),
                  **{"__meta_kubernetes_pod_label_" + re.sub("[^a-zA-Z0-9_]", "_", k): v
                     for k, v in (meta.get("labels") or {}).items()}}
        containers = [(c, "false") for c in pod["spec"]["containers"]] + \
            [(c, "true") for c in pod["spec"].get("initContainers") or []]
        for container, init in containers:
            own = {"__meta_kubernetes_pod_container_name": container["name"], "__meta_kubernetes_pod_container_init": init}
            for port in container.get("ports") or [{}]:  # a container with no port: one target at the pod IP
                address = f"{status['podIP']}:{port['containerPort']}" if port else status["podIP"]
                named = {"__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                         "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                         "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "")} if port else {}
                groups.append({"targets": [address], "labels": {**labels, **own, **named}})
    return groups


@pytest.fixture
def prometheus_targets(control_plane, predictor, tmp_path):
    """Debian's prometheus over our scrape config, its pod discovery replaced by `file_sd` of the namespace's
    real pods (pod_target_groups); returns a function that reads /api/v1/targets."""
    from charts import prometheus

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: apt-get install prometheus", pytrace=False)
    config, _, _ = predictor
    ns = config.kubernetes.namespace
    pods = _cluster(control_plane).list_objects("v1", "Pod", ns)
    (tmp_path / "pods.json").write_text(json.dumps(pod_target_groups(pods)))
    scrape = prometheus.prometheus_config(config)
    scrape.pop("rule_files")
    for job in scrape["scrape_configs"]:
        if "kubernetes_sd_configs" in job:
            assert job.pop("kubernetes_sd_configs") == [{"role": "pod", "namespaces": {"names": [ns]}}], job
            job["file_sd_configs"] = [{"files": [str(tmp_path / "pods.json")]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(scrape))
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--web.listen-address={address}",
                             f"--storage.tsdb.path={tmp_path / 'data'}"], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "prometheus.log", "w"))
    from types import SimpleNamespace

    read = lambda: httpx.get(f"http://{address}/api/v1/targets", params={"state": "any"}, timeout=5).json()["data"]  # noqa: E731
    try:
        yield SimpleNamespace(read=read, log=lambda: (tmp_path / "prometheus.log").read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_prometheus_finds_queue_proxy_on_its_metrics_port_and_never_the_route(control_plane, predictor,
                                                                               prometheus_targets):
    """Our scrape config, judged by Prometheus's own relabelling on the real pods' targets: the
    queue-proxy job scrapes each predictor pod at podIP:9091, the predictor job the model container at
    podIP:8080; neither scrapes queue-proxy's proxy port 8012 (traffic to Knative) nor the route's host."""
    from charts.inference_service import PORT, predictor_host

    config, _, pods = predictor
    ips = {p["status"]["podIP"] for p in pods}
    revision = pods[0]["metadata"]["labels"]["serving.knative.dev/revision"]

    def discovered():
        try:
            data = prometheus_targets.read()
        except (httpx.HTTPError, ValueError):  # not listening yet, or not ready ("Service Unavailable")
            return None
        jobs = {}
        for target in data["activeTargets"]:
            jobs.setdefault(target["labels"]["job"], []).append(target)
        return (data, jobs) if {"queue-proxy", "predictor"} <= set(jobs) else None

    try:
        data, jobs = _wait("Prometheus to discover the predictor pods", discovered, 90.0)
    except AssertionError:
        raise AssertionError(f"no queue-proxy and predictor targets: {prometheus_targets.log()[-3000:]}") from None
    queue_urls = {t["scrapeUrl"] for t in jobs["queue-proxy"]}
    assert queue_urls == {f"http://{ip}:9091/metrics" for ip in ips}, dumps(jobs["queue-proxy"])
    assert {t["labels"]["revision"] for t in jobs["queue-proxy"]} == {revision}
    assert {t["scrapeUrl"] for t in jobs["predictor"]} == {f"http://{ip}:{PORT}/metrics" for ip in ips}
    urls = [t["scrapeUrl"] for t in data["activeTargets"]]
    assert not [u for u in urls if ":8012/" in u or predictor_host(config) in u or "-predictor." in u], urls
    # what service discovery offered and our relabelling dropped: queue-proxy's other declared ports
    dropped = {t["discoveredLabels"].get("__address__") for t in data["droppedTargets"]
               if t["discoveredLabels"].get("job") == "queue-proxy"
               and t["discoveredLabels"].get("__meta_kubernetes_pod_container_name") == "queue-proxy"}
    assert {f"{ip}:8012" for ip in ips} <= dropped and {f"{ip}:9090" for ip in ips} <= dropped, dropped
