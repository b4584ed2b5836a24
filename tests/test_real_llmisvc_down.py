"""Issue 22 item 2 against the REAL control plane: `mlops down` with KServe's llmisvc webhook live.

KServe v0.20.0's LLMInferenceService program (cmd/llmisvc, built by `make controlplane`) runs as the pod of
its release Deployment `kserve/llmisvc-controller-manager` (tests/controlplane_programs.py: its args, env,
ServiceAccount and webhook certificate Secret; a network namespace and pod IP of its own, since it serves
:9443 and :8081 as KServe's manager does). Its validating webhook refuses to delete the ten well-known
LLMInferenceServiceConfigs in `kserve` (pkg/apis/serving/v1alpha2/llm_inference_service_config_validation.go
ValidateDelete: "well-known config %s/%s cannot be deleted" while PREVENT_WELL_KNOWN_CONFIG_DELETION, read
in cmd/llmisvc/main.go, is true, its default). Commit aaa8968's step "3. KServe serving runtimes" applied
all of kserve-cluster-resources.yaml, these ten included, so its `down` could not finish; today the step
applies only the ClusterServingRuntime we serve with (charts/kserve.py RUNTIMES_USED).

The tests run in this order on one control plane: today's `up` then `down`, then aaa8968's `up` and its
`down`, which is refused and leaves the configs (nothing after it needs the plane).
"""

from __future__ import annotations

import time

import pytest

from tests.controlplane_kserve import KSERVE_NS, cluster_of

CONFIGS = "/apis/serving.kserve.io/v1alpha2/namespaces/kserve/llminferenceserviceconfigs"
LLMISVC = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "llmisvc-controller-manager", "namespace": KSERVE_NS}}


def _old_runtimes(config, *, missing_ok=False):
    """aaa8968's charts/kserve.py runtimes(): every object of kserve-cluster-resources.yaml."""
    from charts import upstream

    return upstream.load(config, "kserve-runtimes", missing_ok=missing_ok)


def _well_known():
    from tests.upstream_files import documents, release_manifest

    return [o for o in documents(release_manifest("kserve-runtimes")) if o["kind"] == "LLMInferenceServiceConfig"]


def _up(cli, control_plane, config):
    from tests import controlplane_platform

    controlplane_platform.storage(cluster_of(control_plane))  # what `down` released (as the `platform` fixture)
    result = cli("--config", str(config), "up", "--target", "kubernetes", "--reuse-existing")
    assert result.exit_code == 0, result.stderr + "\n" + "\n".join(control_plane.kubelet.errors[-5:])


def _llmisvc_serving(control_plane):
    """The llmisvc program runs as its pod, and its Deployment is Available (its pod Ready once /readyz answered)."""
    cluster = cluster_of(control_plane)
    deadline = time.monotonic() + 120
    while True:
        live = cluster.get(LLMISVC) or {}
        if (live.get("status") or {}).get("availableReplicas") and control_plane.kubelet.process("kserve-llmisvc"):
            return cluster
        assert time.monotonic() < deadline, (live.get("status"), control_plane.kubelet.errors[-5:])
        time.sleep(0.5)


def test_down_succeeds_with_the_llmisvc_webhook_live(cli, control_plane, platform_project):
    from mlops_cli.targets.kubernetes_ownership import is_ours

    config = platform_project / "mlops.toml"
    _up(cli, control_plane, config)
    cluster = _llmisvc_serving(control_plane)
    # the webhook answers: with failurePolicy Fail, a create it is not reached for is refused ("failed calling
    # webhook"); a dry run changes nothing
    probe = {**_well_known()[0]}
    probe["metadata"] = {**probe["metadata"], "name": "mlops-probe", "namespace": KSERVE_NS}
    cluster.request("POST", CONFIGS, query=[("dryRun", "All")], body=probe)

    done = cli("--config", str(config), "down", "--target", "kubernetes")
    assert done.exit_code == 0, done.stderr + "\n" + "\n".join(control_plane.kubelet.errors[-5:])
    left = (cluster.request("GET", "/apis/serving.kserve.io/v1alpha2/llminferenceserviceconfigs", missing_ok=True) or {})
    assert [o["metadata"]["name"] for o in left.get("items", []) if is_ours(o)] == []


def test_the_llmisvc_webhook_refuses_to_delete_the_configs_aaa8968_applied(cli, control_plane, platform_project,
                                                                          monkeypatch):
    from charts import kserve
    from mlops_cli.adapters.kube_apply import KubeApiError

    monkeypatch.setattr(kserve, "runtimes", _old_runtimes)
    config = platform_project / "mlops.toml"
    _up(cli, control_plane, config)  # the webhook validated and admitted all ten
    cluster = _llmisvc_serving(control_plane)
    names = sorted(o["metadata"]["name"] for o in cluster.request("GET", CONFIGS)["items"])
    assert names == sorted(o["metadata"]["name"] for o in _well_known()) and len(names) == 10

    with pytest.raises(KubeApiError) as refused:
        cluster.request("DELETE", f"{CONFIGS}/{names[0]}")
    assert f"well-known config kserve/{names[0]} cannot be deleted" in str(refused.value), refused.value

    stuck = cli("--config", str(config), "down", "--target", "kubernetes")
    assert stuck.exit_code != 0 and "cannot be deleted" in stuck.stderr, stuck.stderr
    assert "Traceback" not in stuck.stderr and "lacks permission" not in stuck.stderr  # the webhook's verdict, not RBAC
    assert len(cluster.request("GET", CONFIGS)["items"]) == 10


def test_a_webhook_denial_is_not_blamed_on_permissions():
    """The refusal above is a 403, as controller-runtime answers a denial; our hint must not send the user to RBAC."""
    from mlops_cli.adapters.kube_apply import KubeApiError

    err = KubeApiError("DELETE", "LLMInferenceServiceConfig kserve/x", 403, "Forbidden",
                       'admission webhook "llminferenceserviceconfig.kserve-webhook-server.v1alpha2.validator" denied the '
                       "request: well-known config kserve/x cannot be deleted")
    assert "admission webhook" in err.hint and "lacks permission" not in err.hint
