"""`mlops render`: what `up` / `deploy` apply, as YAML files, offline; valid against the real schemas."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.upstream_bundle import build_bundle, kubernetes_toml
from tests.schema_support import problems, unvalidated

SENTINEL = "render-Secret-Sentinel-31337"


def _objects(directory):
    index = yaml.safe_load((directory / "index.txt").read_text())
    files = index["files"]
    assert files == sorted(files)  # numbered in install order
    return index, [o for name in files for o in yaml.safe_load_all((directory / name).read_text()) if o]


def test_offline_render_writes_our_objects_and_lists_upstream_manifests(project, cli, monkeypatch):
    monkeypatch.setenv("MLOPS_GATEWAY_PASSWORD", SENTINEL)
    (project / "mlops.toml").write_text('[project]\nname = "t"\n[kubernetes]\nnamespace = "ml-prod"\n')
    result = cli("render", "--target", "kubernetes", "-o", "out")
    assert result.exit_code == 0, result.stderr
    index, objects = _objects(project / "out")
    assert {u["manifest"] for u in index["upstream_not_included"]} >= {"cert-manager", "knative-core", "kserve"}
    for item in index["upstream_not_included"]:
        assert item["url"].startswith("https://") and item["version"] in item["url"] and item["sha256"]
    kserve = next(u for u in index["upstream_not_included"] if u["manifest"] == "kserve")
    assert kserve["configmap_changes"][0]["set"]["disableIstioVirtualHost"] is True
    assert {"Deployment", "Service", "NetworkPolicy", "ConfigMap", "PersistentVolumeClaim"} <= {o["kind"] for o in objects}
    assert all(o["kind"] != "Secret" for o in objects)
    assert {"name": "mlops-gateway-auth", "namespace": "ml-prod", "keys": [".htpasswd", "password", "user"]} in index["secrets_to_create"]
    text = "".join(p.read_text() for p in (project / "out").iterdir())
    assert SENTINEL not in text and "ingress-nginx/controller" not in text
    for version in ("1.34", "1.35"):
        assert problems(objects, version) == []
    # without the bundled CRDs, these kinds have no schema here (see tests/schema_support.py)
    assert unvalidated(objects) == {"Issuer", "Certificate", "GatewayClass", "Gateway", "HTTPRoute", "SecurityPolicy"}


def test_render_is_what_up_applies(project, cli):
    from charts.platform import all_objects
    from mlops_cli.config.loading import load_config

    pins = build_bundle(project / "bundle")
    (project / "mlops.toml").write_text('[project]\nname = "t"\n' + kubernetes_toml(project / "bundle", pins))
    result = cli("--json", "render", "--target", "kubernetes", "-o", "out")
    assert result.exit_code == 0, result.stderr
    index, objects = _objects(project / "out")
    assert index["upstream_not_included"] == []  # all bundled: included as applied, patches made
    applied = [o for o in all_objects(load_config(), None) if o["kind"] != "Secret"]
    key = lambda o: (o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, objects)) == sorted(map(key, applied))
    assert {json.dumps(o, sort_keys=True) for o in objects} == {json.dumps(o, sort_keys=True) for o in applied}
    # stdout without -o: the same objects as one YAML stream
    streamed = cli("render", "--target", "kubernetes")
    assert streamed.exit_code == 0
    assert [key(o) for o in yaml.load_all(streamed.stdout, Loader=yaml.CSafeLoader) if o] == [key(o) for o in objects]


def test_render_deploy_writes_the_cluster_local_inference_service(project, cli, monkeypatch):
    """What deploy applies, serving the default runtime: the version's onnx-int8 export, found through its
    run (MLflow 3.17 keeps run artifacts apart from the logged model's; tests/test_mlflow_storage_contract.py)."""
    from types import SimpleNamespace

    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.registry import versions as registry

    (project / "mlops.toml").write_text('[project]\nname = "t"\n[kubernetes]\nmlflow_artifacts = "s3://bucket/mlflow"\n')
    monkeypatch.setattr(registry, "resolve_version", lambda config, version=None, alias=None: registry.ModelRef(
        name="review-sentiment", version=version or "7", run_id="r", source="models:/m-0123",
        artifact_uri="s3://bucket/mlflow/1/models/m-0123/artifacts", tags={"onnx_int8": "runs:/r/onnx-int8"}))
    monkeypatch.setattr(mlflow_tracking, "get_run", lambda config, run_id: SimpleNamespace(
        info=SimpleNamespace(artifact_uri=f"s3://bucket/mlflow/1/{run_id}/artifacts")))
    result = cli("render", "--target", "kubernetes", "--deploy", "--version", "3", "--canary", "20", "-o", "out")
    assert result.exit_code == 0, result.stderr
    _, (isvc,) = _objects(project / "out")
    assert isvc["kind"] == "InferenceService"
    assert isvc["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    predictor = isvc["spec"]["predictor"]
    assert "securityContext" not in predictor and predictor["canaryTrafficPercent"] == 20
    (container,) = predictor["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STORAGE_URI"] == "s3://bucket/mlflow/1/r/artifacts/onnx-int8"
    assert container["command"][container["command"].index("--runtime") + 1] == "onnx-int8"
    assert problems([isvc], "1.35") == []


@pytest.mark.parametrize("args, message", [
    (("--target", "local"), "render needs a cluster target"),
    (("--target", "kubernetes", "--version", "3"), "need --deploy"),
])
def test_render_refuses_what_it_cannot_do(project, cli, args, message):
    result = cli("render", *args)
    assert result.exit_code == 2 and message in result.stderr
    assert not (project / "out").exists()


def test_a_local_target_from_the_config_is_named_as_such(project, cli):
    # issue 26 D23: "got --target local" when no flag was given
    (project / "mlops.toml").write_text('[project]\nname = "t"\ntarget = "local"\n')
    result = cli("render")
    assert result.exit_code == 2
    assert f"got [project].target = 'local' (file:{project / 'mlops.toml'})" in result.stderr
    assert "--target local" not in result.stderr
    assert "got --target local" in cli("render", "--target", "local").stderr


def test_every_manifest_file_kubectl_reads_in_the_directory_is_an_object(project, cli):
    # issue 26 D33: `kubectl apply -f DIR/` reads every .json/.yaml/.yml file in DIR (k8s.io/cli-runtime
    # pkg/resource/visitor.go, ignoreFile); index.yaml among them failed the apply with "Kind is missing"
    result = cli("render", "--target", "kubernetes", "-o", "out")
    assert result.exit_code == 0, result.stderr
    read_by_kubectl = [p for p in (project / "out").iterdir() if p.suffix in (".json", ".yaml", ".yml")]
    assert read_by_kubectl
    for path in read_by_kubectl:
        for obj in yaml.safe_load_all(path.read_text()):
            assert obj is None or (obj.get("apiVersion") and obj.get("kind")), path.name
    assert "upstream_not_included" in yaml.safe_load((project / "out" / "index.txt").read_text())
