"""Knative Serving's admission of a revision template, as its webhook decides it from `config-features`.

A port of the field masks in knative/serving pkg/apis/serving/fieldmask.go at tag knative-v1.21.1
(`PodSpecMask`, `PodSecurityContextMask`, `SecurityContextMask`, `ContainerMask`, `VolumeSourceMask`),
which `ValidatePodSpec` (pkg/apis/serving/k8s_validation.go) applies with `apis.CheckDisallowedFields`:
a field the mask drops is refused with "must not set the field(s): <path>".

The flags are read from the ConfigMap as applied to the cluster (`knative-serving/config-features`),
falling back to the defaults documented in the real release file
knative.dev/serving config/core/configmaps/features.yaml at the pinned version (tests/upstream_files.py; its
`_example` block, which Knative checks against the code defaults with `knative.dev/example-checksum`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from tests.upstream_files import module_file

FEATURES_FILE = "config/core/configmaps/features.yaml"  # in knative.dev/serving
WEBHOOK = 'admission webhook "validation.webhook.serving.knative.dev" denied the request: validation failed'

# PodSpecMask: always allowed, then gated by a flag.
POD_ALLOWED = {"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks"}
POD_GATED = {
    "affinity": "kubernetes.podspec-affinity",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "tolerations": "kubernetes.podspec-tolerations",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "initContainers": "kubernetes.podspec-init-containers",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
    "hostIPC": "kubernetes.podspec-hostipc",
    "hostPID": "kubernetes.podspec-hostpid",
    "hostNetwork": "kubernetes.podspec-hostnetwork",
}
POD_SECURITY_WITH_FLAG = {"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "supplementalGroups", "seccompProfile"}
CONTAINER_ALLOWED = {"name", "args", "command", "env", "workingDir", "envFrom", "image", "imagePullPolicy", "livenessProbe",
                     "ports", "readinessProbe", "resources", "securityContext", "startupProbe", "terminationMessagePath",
                     "terminationMessagePolicy", "volumeMounts"}
CONTAINER_SECURITY_ALLOWED = {"capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup", "runAsNonRoot",
                              "allowPrivilegeEscalation", "seccompProfile"}
VOLUME_ALLOWED = {"secret", "configMap", "projected"}
VOLUME_GATED = {
    "emptyDir": "kubernetes.podspec-volumes-emptydir",
    "persistentVolumeClaim": "kubernetes.podspec-persistent-volume-claim",
    "hostPath": "kubernetes.podspec-volumes-hostpath",
    "csi": "kubernetes.podspec-volumes-csi",
    "image": "kubernetes.podspec-volumes-image",
}


@lru_cache(maxsize=1)
def default_features() -> dict[str, str]:
    doc = yaml.safe_load(module_file("knative-serving", FEATURES_FILE))
    example = yaml.safe_load(doc["data"]["_example"]) or {}
    return {str(k): str(v) for k, v in example.items()}


def features(live_config_map: dict[str, Any] | None) -> dict[str, str]:
    data = {k: str(v) for k, v in ((live_config_map or {}).get("data") or {}).items() if not k.startswith("_")}
    return {**default_features(), **data}


def _on(flags: dict[str, str], name: str) -> bool:
    return flags.get(name, "disabled").lower() != "disabled"  # "enabled" and "allowed" both pass the mask


def refused_fields(pod_spec: dict[str, Any], flags: dict[str, str], at: str = "spec.template.spec") -> list[str]:
    """The paths Knative's webhook would refuse in a revision's pod spec (empty: admitted)."""
    bad: list[str] = []
    for key, value in pod_spec.items():
        if key in POD_ALLOWED or (key in POD_GATED and _on(flags, POD_GATED[key])):
            continue
        if key == "automountServiceAccountToken" and value is False:
            continue  # "Only allow setting AutomountServiceAccountToken to false"
        if key == "securityContext":
            bad += _pod_security(value or {}, flags, f"{at}.securityContext")
            continue
        bad.append(f"{at}.{key}")
    for i, c in enumerate(pod_spec.get("containers") or []):
        where = f"{at}.containers[{i}]"
        bad += [f"{where}.{k}" for k in c if k not in CONTAINER_ALLOWED]
        sc = c.get("securityContext") or {}
        bad += [f"{where}.securityContext.{k}" for k in sc
                if k not in CONTAINER_SECURITY_ALLOWED and not (k == "privileged" and sc[k] is False)]
        if (sc.get("capabilities") or {}).get("add") and not _on(flags, "kubernetes.containerspec-addcapabilities"):
            bad.append(f"{where}.securityContext.capabilities.add")
    for i, v in enumerate(pod_spec.get("volumes") or []):
        for k in v:
            if k == "name" or k in VOLUME_ALLOWED or (k in VOLUME_GATED and _on(flags, VOLUME_GATED[k])):
                continue
            bad.append(f"{at}.volumes[{i}].{k}")
    return bad


def _pod_security(sc: dict[str, Any], flags: dict[str, str], at: str) -> list[str]:
    if _on(flags, "kubernetes.podspec-securitycontext"):
        allowed = POD_SECURITY_WITH_FLAG
    elif flags.get("secure-pod-defaults", "disabled").lower() in {"enabled", "allowrootbounded"}:
        allowed = {"seccompProfile"}  # PodSecurityContextMask keeps only the seccomp opt-out then
    else:
        return [at]  # PodSpecMask drops the whole securityContext
    return [f"{at}.{k}" for k in sc if k not in allowed]


def denial(fields: list[str]) -> str:
    return f"{WEBHOOK}: must not set the field(s): {', '.join(sorted(fields))}"
