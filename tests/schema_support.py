"""Validation of rendered objects against the real schemas: Kubernetes core kinds against the OpenAPI
schemas kubernetes-validate ships (1.34, 1.35, ...), KServe and Knative kinds against their real CRDs at
the pinned versions (tests/upstream_files.py: KServe's kserve-crds.yaml release asset, Knative Serving's
config/core/300-resources), made strict the way the API server's fieldValidation=Strict is."""

from __future__ import annotations

import copy
import functools

import jsonschema
import kubernetes_validate

from tests.upstream_files import documents, module_file, release_manifest


def _crd_schemas(objects: list[dict]) -> dict[tuple[str, str], dict]:
    out = {}
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            spec = obj["spec"]
            for version in spec["versions"]:
                out[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return out


def strict(schema: dict) -> dict:
    """A CRD's openAPIV3Schema as the API server applies it with fieldValidation=Strict: a field the
    schema does not declare is an error (unless x-kubernetes-preserve-unknown-fields); metadata is
    the API server's, not the CRD's, to check."""
    out = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    out.setdefault("properties", {})["metadata"] = {"type": "object"}
    return out


@functools.lru_cache(maxsize=None)
def real_crd_schemas() -> dict[tuple[str, str], dict]:
    """KServe's and Knative Serving's real CRDs at the pinned versions, strict."""
    docs = documents(release_manifest("kserve-crds"))
    for name in ("service", "configuration", "revision", "route"):
        docs += documents(module_file("knative-serving", f"config/core/300-resources/{name}.yaml"))
    return {key: strict(schema) for key, schema in _crd_schemas(docs).items()}


def validate(obj: dict, version: str, crds: dict) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in real_crd_schemas():
        jsonschema.Draft7Validator(real_crd_schemas()[key]).validate(obj)
    elif key in crds:  # the CRDs among the objects: the bundle's real release files (cert-manager, Gateway API, ...)
        jsonschema.Draft7Validator(crds[key]).validate(obj)
    else:
        core_validator(version, obj["apiVersion"], obj["kind"]).validate(obj)


# API groups whose real CRDs are not read here: cert-manager, Gateway API, Envoy Gateway.
# Their objects are validated here only against the CRDs among the objects (the bundle's real cert-manager and
# Envoy Gateway release files, when bundled); tests/test_real_reuse_existing.py applies ours to the real CRDs.
NO_SCHEMA_HERE = ("cert-manager.io/", "gateway.networking.k8s.io/", "gateway.envoyproxy.io/")


def unvalidated(objects: list[dict]) -> set[str]:
    crds = _crd_schemas(objects)
    return {o["kind"] for o in objects if o["apiVersion"].startswith(NO_SCHEMA_HERE) and (o["apiVersion"], o["kind"]) not in crds}


def problems(objects: list[dict], version: str) -> list[str]:
    """Every object that does not validate, as 'Kind name: message at path' (see NO_SCHEMA_HERE)."""
    crds = _crd_schemas(objects)
    skipped = unvalidated(objects)
    out = []
    for obj in objects:
        if obj["kind"] in skipped and obj["apiVersion"].startswith(NO_SCHEMA_HERE):
            continue
        try:
            validate(obj, version, crds)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            out.append(f"{obj['kind']} {obj['metadata'].get('name')}: {exc.message} at {list(exc.absolute_path)}")
    return out


@functools.lru_cache(maxsize=None)
def core_validator(version: str, api_version: str, kind: str):
    """kubernetes_validate.validate(obj, version, strict=True), with the schema and its 3 MB of shared
    definitions loaded once per kind instead of once per object (same files, same validator)."""
    import re

    from kubernetes_validate import utils
    from referencing import Registry, Resource

    minor = utils.major_minor(version)
    if minor > utils.latest_version():
        raise utils.VersionNotSupportedError(version=minor)
    chosen = [v for v in utils.all_versions() if utils.major_minor(v) <= minor][-1]
    directory = f"kubernetes-json-schema/v{chosen}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{directory}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        raise utils.SchemaNotFoundError(version=minor, kind=kind, api_version=api_version) from None
    definitions = utils.schema_contents(f"{directory}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return _RaisesLikeKubernetesValidate(jsonschema.validators.Draft202012Validator(schema, registry=registry), minor)


class _RaisesLikeKubernetesValidate:
    def __init__(self, validator, version: str) -> None:
        self.validator, self.version = validator, version

    def validate(self, obj: dict) -> None:
        try:
            self.validator.validate(obj)
        except jsonschema.ValidationError as exc:
            raise kubernetes_validate.ValidationError(exc, version=self.version) from None

