"""Our InferenceService against KServe v0.20.0's REAL controller-manager and its admission webhooks, on the
real control plane: the session's `kserve` fixture (tests/conftest.py, tests/controlplane_kserve.py) installs
KServe from its own release file in the pinned Go module.
"""

from __future__ import annotations

import copy

import yaml

from tests.controlplane_kserve import cluster_of as _cluster


def _isvc(namespace, mode):
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": f"check-{mode.lower()}", "namespace": namespace,
                         "annotations": {"serving.kserve.io/deploymentMode": mode}},
            "spec": {"predictor": {"sklearn": {"storageUri": "s3://bucket/model"}}}}


def test_kserve_defaulter_rewrites_the_legacy_serverless_mode(control_plane, kserve):
    """KServe v0.20.0 renamed deploymentMode Serverless to Knative: its defaulting webhook rewrites the annotation
    (pkg/apis/serving/v1beta1/inference_service_defaults.go: LegacyServerless -> Knative)."""
    cluster = _cluster(control_plane)
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "isvc-check"}})
    cluster.apply(_isvc("isvc-check", "Serverless"))
    live = cluster.get(_isvc("isvc-check", "Serverless"))
    assert live["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative", kserve.tail()


def test_our_inference_service_is_stored_as_we_applied_it(control_plane, kserve, project, cli, monkeypatch):
    """What `mlops deploy` applies must come back unchanged from KServe's admission, else every deploy sees
    a change (the InferenceService is compared field by field: kube_apply.UNANNOTATED_KINDS)."""
    from types import SimpleNamespace

    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.adapters.kube_objects import covers
    from mlops_cli.registry import versions as registry

    # a registered version as tests/test_render.py fakes it (the registry is not what is tested here)
    monkeypatch.setattr(registry, "resolve_version", lambda config, version=None, alias=None: registry.ModelRef(
        name="review-sentiment", version=version or "7", run_id="r", source="models:/m-0123",
        artifact_uri="s3://bucket/mlflow/1/models/m-0123/artifacts", tags={"onnx_int8": "runs:/r/onnx-int8"}))
    monkeypatch.setattr(mlflow_tracking, "get_run", lambda config, run_id: SimpleNamespace(
        info=SimpleNamespace(artifact_uri=f"s3://bucket/mlflow/1/{run_id}/artifacts")))
    (project / "mlops.toml").write_text('[project]\nname = "t"\n[kubernetes]\nmlflow_artifacts = "s3://bucket/mlflow"\n')
    result = cli("render", "--target", "kubernetes", "--deploy", "--version", "3", "-o", "out")
    assert result.exit_code == 0, result.stderr
    index = yaml.safe_load((project / "out" / "index.txt").read_text())
    objects = [o for name in index["files"] for o in yaml.safe_load_all((project / "out" / name).read_text()) if o]
    isvc = next(o for o in objects if o["kind"] == "InferenceService")
    cluster = _cluster(control_plane, isvc["metadata"]["namespace"])
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": isvc["metadata"]["namespace"]}})
    cluster.apply(copy.deepcopy(isvc))
    live = cluster.get(isvc)
    ours = isvc["metadata"]["annotations"]
    theirs = {k: live["metadata"].get("annotations", {}).get(k) for k in ours}
    assert theirs == ours, f"KServe's admission changed our annotations: {ours} -> {theirs}"
    assert covers(live["spec"], isvc["spec"]), _differences(live["spec"], isvc["spec"], "spec")


def _differences(live, want, path):
    """Where the live object lacks or changed a value we set: 'path: ours -> theirs' lines."""
    if isinstance(want, dict) and isinstance(live, dict):
        return [d for k, v in want.items() for d in _differences(live.get(k), v, f"{path}.{k}")]
    if isinstance(want, list) and isinstance(live, list) and len(want) == len(live):
        return [d for i, (lv, wv) in enumerate(zip(live, want)) for d in _differences(lv, wv, f"{path}[{i}]")]
    return [] if live == want else [f"{path}: {want!r} -> {live!r}"]
