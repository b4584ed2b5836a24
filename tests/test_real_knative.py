"""Knative Serving's REAL webhook, installed by `mlops up` on the real control plane (the `platform` fixture,
tests/controlplane_platform.py) and run as its pod (tests/controlplane_programs.py): the API server calls
it through its Service, as in any cluster. The whole flow through Knative is tests/test_real_flow.py.
"""

from __future__ import annotations

import pytest

from tests.controlplane import dumps


def _cluster(plane, namespace="default"):
    from mlops_cli.adapters.kube_apply import KubeCluster

    return KubeCluster.connect(str(plane.kubeconfig), "", namespace)


def test_knatives_webhook_is_reached_through_its_service_and_refuses_a_pod_security_context(control_plane, platform):
    """No URL change for Knative: its webhook configurations still name Service knative-serving/webhook (the
    webhook's own reconciler writes them), and its validation refuses a pod-level securityContext while
    `kubernetes.podspec-securitycontext` is disabled (pkg/apis/serving/fieldmask.go PodSecurityContextMask),
    which is why charts/inference_service.py puts every hardening field on the container."""
    from mlops_cli.adapters.kube_apply import KubeApiError

    cluster = _cluster(control_plane)
    hooks = cluster.request("GET", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/webhook.serving.knative.dev")
    assert [h["clientConfig"]["service"]["name"] for h in hooks["webhooks"]] == ["webhook"], dumps(hooks)
    assert all("url" not in h["clientConfig"] for h in hooks["webhooks"])
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "knative-check"}})
    ksvc = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "check", "namespace": "knative-check"},
            "spec": {"template": {"spec": {"securityContext": {"runAsUser": 1000},
                                           "containers": [{"image": "kind.local/check:1"}]}}}}
    with pytest.raises(KubeApiError) as refused:
        cluster.apply(ksvc)
    assert "validation.webhook.serving.knative.dev" in str(refused.value), str(refused.value)
    assert "spec.template.spec.securityContext.runAsUser" in str(refused.value), str(refused.value)

