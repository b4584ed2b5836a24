"""Step 3: KServe (CRDs, controller), then its cluster serving runtimes, from upstream manifests.

The runtimes are a separate step because KServe's admission webhook validates them: they can only be
applied once the controller is Available.

Networking: we install Knative with Kourier, not Istio. KServe's `inferenceservice-config` ships
pointing at Istio (`localGatewayService: knative-local-gateway.istio-system...`, a top-level Istio
VirtualService per InferenceService). KServe's documented way to run on Kourier is
`"disableIstioVirtualHost": true` in its `ingress` section (kserve/website docs/admin/serverless/
kourier_networking); KServe then reports the predictor's own Knative address as the
InferenceService's address (`inference_service.predictor_url`). The local gateway Service key is pointed at
Kourier's internal gateway Service so nothing in the config names a Service that does not exist.
Keys checked against the real v0.20.0 ConfigMap (config/configmap/inferenceservice.yaml) by the tests.

The release asset kserve.yaml has no Namespace (hack/release/generate-install.sh filters every Namespace
out: `kustomize build config/overlays/all | yq 'select(.kind != "Namespace")'`), yet its objects live in
`kserve`: KServe's own installer creates that namespace first (install/v0.20.0/
kserve-knative-mode-full-install-with-manifests.sh, its KSERVE_CORE_MANIFEST starts with Namespace
kserve), and so do we. Of kserve-cluster-resources.yaml we apply only the ClusterServingRuntime we
serve with: its LLMInferenceServiceConfigs need KServe's llmisvc webhook to be created, and that webhook
refuses to delete them (PREVENT_WELL_KNOWN_CONFIG_DELETION defaults to true, cmd/llmisvc/main.go), so
`down` could never remove them.

KServe injects its storage-initializer init container (for an `s3://` model) with no securityContext
(pkg/utils/storage.go CreateInitContainerWithConfig, v0.20.0), so Pod Security `restricted` on our
namespace refuses every such predictor pod. KServe merges the container of the ClusterStorageContainer
that serves the URI over it (pkg/webhook/admission/pod/storage_initializer_injector.go,
CommonStorageInitialization: utils.MergeContainerWithPatch), and an InferenceService names the one it
wants in `spec.predictor.storageContainerName` (pkg/apis/serving/v1beta1/predictor.go; the controller
passes it to the pod as `internal.serving.kserve.io/storage-container-name`, components/predictor.go).
So we add our own ClusterStorageContainer, the release's `default` plus a restricted securityContext,
and name it: the release's objects stay as released, and a reused KServe gets it too.
"""

from __future__ import annotations

from typing import Any

from mlops_cli.config.settings import Config

from . import upstream
from .configmap_patch import ConfigMapPatch, apply_patches
from .inference_service import STORAGE_CONTAINER, STORAGE_URI_PREFIXES
from .knative import KOURIER_INTERNAL

CONFIG_NAMESPACE = "kserve"   # where kserve.yaml puts everything namespaced
CONFIG_NAME = "inferenceservice-config"
# The ClusterServingRuntime `[serving].predictor_server = "huggingface"` selects (modelFormat huggingface).
RUNTIMES_USED = ("kserve-huggingfaceserver",)
# kserve/storage-initializer's Dockerfile (python/storage-initializer.Dockerfile, v0.20.0): `USER 1000`
STORAGE_INITIALIZER_UID = 1000


def patches(config: Config) -> list[ConfigMapPatch]:
    ingress = {"disableIstioVirtualHost": True, "localGatewayService": KOURIER_INTERNAL}
    return [ConfigMapPatch(CONFIG_NAMESPACE, CONFIG_NAME, ingress, json_key="ingress", why="Kourier, not Istio",
                           manifest="kserve")]


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONFIG_NAMESPACE}}


def objects(config: Config, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    objs = upstream.load(config, "kserve", missing_ok=missing_ok)
    if not objs and missing_ok:
        return [namespace()]  # `mlops render` lists the manifest and these patches instead
    has_namespace = any(o["kind"] == "Namespace" and o["metadata"]["name"] == CONFIG_NAMESPACE for o in objs)
    return ([] if has_namespace else [namespace()]) + apply_patches(objs, patches(config), "kserve")


def runtimes(config: Config, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    return [o for o in upstream.load(config, "kserve-runtimes", missing_ok=missing_ok)
            if o["kind"] == "ClusterServingRuntime" and o["metadata"]["name"] in RUNTIMES_USED]


def storage_container(config: Config) -> dict[str, Any]:
    """Our ClusterStorageContainer: KServe's storage-initializer (the image of the release's `default`)
    with what Pod Security `restricted` asks of every container."""
    from .objects import metadata

    security = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                "runAsUser": STORAGE_INITIALIZER_UID, "runAsGroup": STORAGE_INITIALIZER_UID,
                "seccompProfile": {"type": "RuntimeDefault"}}
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterStorageContainer",
            "metadata": metadata(STORAGE_CONTAINER, "predictor"),
            "spec": {"container": {"name": "storage-initializer",
                                   "image": f"kserve/storage-initializer:{config.kubernetes.kserve_version}",
                                   "securityContext": security},
                     "supportedUriFormats": [{"prefix": p} for p in STORAGE_URI_PREFIXES],
                     "workloadType": "initContainer"}}
