"""What the real-control-plane tests of `mlops deploy` share: a registry answering for any version, and the
traffic split read where Knative writes it (the Route's status), sampled while a test runs.
"""

from __future__ import annotations

import threading

import pytest

NS = "mlops"
KNATIVE = "serving.knative.dev/v1"


def cluster(plane):
    from mlops_cli.adapters.kube_apply import KubeCluster

    return KubeCluster.connect(str(plane.kubeconfig), "", "default")


def fake_registry(monkeypatch):
    """For a test's `registry` fixture: version N registered against the cluster's MLflow, its artifacts on MLflow's volume (mlflow-artifacts:/...)."""
    from types import SimpleNamespace

    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.registry import versions as reg

    monkeypatch.setattr(reg, "resolve_version", lambda config, version=None, alias=None: reg.ModelRef(
        name="review-sentiment", version=version or "1", run_id=f"run{version}", source=f"models:/m-{version}",
        artifact_uri=f"mlflow-artifacts:/1/models/m-{version}/artifacts", aliases=[],
        tags={"onnx_int8": f"runs:/run{version}/onnx-int8"}, created=""))
    monkeypatch.setattr(mlflow_tracking, "get_run", lambda config, run_id: SimpleNamespace(
        info=SimpleNamespace(artifact_uri=f"mlflow-artifacts:/1/{run_id}/artifacts")))


class RouteTraffic(threading.Thread):
    """Samples the real Route's status.traffic (revision -> percent) while the test runs."""

    def __init__(self, plane, name):
        super().__init__(daemon=True)
        self.cluster, self.name, self.samples, self.done = cluster(plane), name, [], threading.Event()

    def run(self):
        while not self.done.wait(0.2):
            route = self.cluster.get({"apiVersion": KNATIVE, "kind": "Route", "metadata": {"name": self.name, "namespace": NS}})
            split = {t["revisionName"]: t.get("percent", 0) for t in ((route or {}).get("status") or {}).get("traffic") or []}
            if split and (not self.samples or self.samples[-1] != split):
                self.samples.append(split)


def revision_of(cluster, version):
    for rev in cluster.list_objects(KNATIVE, "Revision", NS):
        if (rev["metadata"].get("annotations") or {}).get("mlops.dev/model-version") == version:
            return rev["metadata"]["name"]
    return None
