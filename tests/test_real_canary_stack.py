"""`mlops deploy` against the REAL control plane, the two cases tests/test_real_flow.py does not walk: a canary
on top of a canary, and a rollback after a promotion. The traffic is read where the real programs write it:
the Knative Route's status (sampled throughout) and the InferenceService's status (KServe's manager).

KServe's controller splits a canary with the last revision that took all the traffic, the
InferenceService's status.components.predictor.latestRolledoutRevision (pkg/controller/v1beta1/
inferenceservice/components/predictor.go and reconcilers/knative/ksvc_reconciler.go, v0.20.0): a second
canary replaces the first one beside it. A rollback after a promotion pins all traffic to the previous
rolled-out revision (canaryTrafficPercent 0; KServe then takes previousRolledoutRevision as the one to
route to, pkg/apis/serving/v1beta1/inference_service_status.go), and `mlops deploy --rollback` restores
that version's spec, a new revision of it that takes over once Ready. The programs are as
tests/test_real_flow.py runs them (tests/controlplane_programs.py); kwok is the node.
"""

from __future__ import annotations

import json

import pytest

from tests.controlplane_deploy import NS, RouteTraffic, fake_registry
from tests.controlplane_deploy import cluster as _cluster
from tests.controlplane_deploy import revision_of as _revision_of

ISVC = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "sentiment", "namespace": NS}}


@pytest.fixture
def registry(monkeypatch):
    fake_registry(monkeypatch)


def _versions(cluster):
    """Revision -> the model version it serves (our annotation, copied by Knative from the template)."""
    return {r["metadata"]["name"]: (r["metadata"].get("annotations") or {}).get("mlops.dev/model-version")
            for r in cluster.list_objects("serving.knative.dev/v1", "Revision", NS)}


def _served(split):
    """The revisions a Route's traffic gives a share (KServe's pin keeps the latest revision listed at 0%)."""
    return {revision: percent for revision, percent in split.items() if percent}


def _predictor_status(cluster):
    return ((cluster.get(ISVC) or {}).get("status") or {}).get("components", {}).get("predictor", {})


def test_a_canary_over_a_canary_then_a_rollback_after_a_promotion(control_plane, platform, cli, registry):
    def deploy(*args):
        result = cli("--config", str(platform), "--json", "deploy", "--target", "kubernetes", *args)
        assert result.exit_code == 0, result.stderr + "\n" + "\n".join(control_plane.kubelet.errors[-5:])
        return json.loads(result.stdout)

    cluster = _cluster(control_plane)
    route = RouteTraffic(control_plane, "sentiment-predictor")
    route.start()
    try:
        assert deploy("--version", "1")["traffic"] == "v1 100%"
        v1 = _revision_of(cluster, "1")
        assert deploy("--version", "2", "--canary", "20")["traffic"] == "v1 80%, v2 20% (canary)"
        v2 = _revision_of(cluster, "2")
        assert route.samples[-1] == {v1: 80, v2: 20}, route.samples

        # a canary on top of a canary: the new one is split with v1, the last revision rolled out; v2 is gone
        seen = len(route.samples)
        assert deploy("--version", "3", "--canary", "20")["traffic"] == "v1 80%, v3 20% (canary)"
        v3 = _revision_of(cluster, "3")
        assert route.samples[-1] == {v1: 80, v3: 20}, route.samples
        assert all(set(s) <= {v1, v2, v3} and s.get(v3, 0) <= 20 for s in route.samples[seen:]), route.samples
        assert _predictor_status(cluster).get("latestRolledoutRevision") == v1

        assert deploy("--promote")["traffic"] == "v3 100%"
        assert route.samples[-1] == {v3: 100}, route.samples
        assert _predictor_status(cluster).get("latestRolledoutRevision") == v3

        # a rollback after a promotion: back to the revision rolled out before v3's (KServe's previousRolledoutRevision)
        assert deploy("--version", "5")["traffic"] == "v5 100%"
        v5 = _revision_of(cluster, "5")
        assert route.samples[-1] == {v5: 100}, route.samples
        assert _predictor_status(cluster).get("previousRolledoutRevision") == v3
        seen = len(route.samples)
        rolled = deploy("--rollback")
        assert rolled["traffic"] == "v3 100%" and rolled["model_version"] == "3", rolled
        # first all traffic back on v3's own revision at once (canaryTrafficPercent 0: KServe routes to its
        # previous rolled-out revision), then v3's spec restored: a new revision of version 3 takes it over
        assert any(_served(split) == {v3: 100} for split in route.samples[seen:]), route.samples
        (last, percent), = _served(route.samples[-1]).items()
        assert percent == 100 and _versions(cluster)[last] == "3", (route.samples, _versions(cluster))
    finally:
        route.done.set()
        route.join()
