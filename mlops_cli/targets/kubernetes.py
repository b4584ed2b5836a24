"""The `kubernetes` target: the platform installed into any cluster a kubeconfig context reaches.

`up` applies the steps of `charts.platform.platform_steps` in order (server-side apply, CRDs waited until
Established, Deployments until rolled out, one deadline per step), after refusing what would never
converge (a Terminating namespace, no usable StorageClass) or would take over someone else's install
(kubernetes_ownership). `deploy` applies a KServe InferenceService and waits on the traffic split its
status reports (kubernetes_rollout); `--rollback` pins traffic KServe's way. `down` deletes in
dependency order and waits for each stage to be gone.
"""

from __future__ import annotations

import copy
import json
import os
import ssl
import time
from typing import TYPE_CHECKING, Any, Iterator

from ..adapters.kube_apply import READY_CONDITION, KubeCluster, condition, describe, secret_values
from ..config.settings import Config
from ..common.errors import GatewayOverloaded, MlopsError, NotFoundError, PreflightError, UnreachableError
from ..common.progress import Reporter
from .base import ComponentStatus, Confirm, DeployOptions, DownOptions, Outcome, StepResult, UpOptions
from .kubernetes_edge import edge_request, edge_trust
from .kubernetes_ownership import foreign, is_ours
from .kubernetes_rollout import Rollouts, pinned_to, serving

if TYPE_CHECKING:
    from charts.secrets import GatewayCredentials, PlatformSecrets


# Deployments whose Available condition says a component works, in the order `status` lists them.
COMPONENTS: list[tuple[str, str, str]] = [
    ("cert-manager", "cert-manager", "cert-manager-webhook"),
    ("knative", "knative-serving", "controller"),
    ("kourier", "kourier-system", "3scale-kourier-gateway"),
    ("kserve", "kserve", "kserve-controller-manager"),
    ("envoy-gateway", "envoy-gateway-system", "envoy-gateway"),
    ("prometheus", "", "prometheus"),
    ("grafana", "", "grafana"),
    ("jaeger", "", "jaeger"),
    ("loki", "", "loki"),
    ("mlflow", "", "mlflow"),
    ("drift", "", "drift"),
    ("gateway", "", "gateway"),
]
# Applied before the rest of a step (CRDs then waited Established): the objects live in them or are of their kinds.
FIRST_KINDS = ("Namespace", "CustomResourceDefinition")
KEPT_WITHOUT_PURGE = {"CustomResourceDefinition", "PersistentVolumeClaim"}
HISTORY_SUFFIX = "-deployments"
HISTORY_KEPT = 10  # versions whose InferenceService spec is kept for --rollback


class KubernetesTarget:
    name = "kubernetes"

    def __init__(self, config: Config, cluster: KubeCluster | None = None) -> None:
        self.config = config
        self._cluster = cluster

    # --- connection ------------------------------------------------------------------------------

    @property
    def cluster(self) -> KubeCluster:
        if self._cluster is None:
            k = self.config.kubernetes
            kubeconfig = str(self.config.path(k.kubeconfig)) if k.kubeconfig else ""
            self._cluster = KubeCluster.connect(kubeconfig, k.context, k.namespace)
        return self._cluster

    def checks(self) -> list[Any]:
        from ..common.check import Check

        k = self.config.kubernetes
        path = self.config.path(k.kubeconfig) if k.kubeconfig else None
        if path is None:
            env = os.environ.get("KUBECONFIG", "")
            path = self.config.path(env.split(os.pathsep)[0]) if env else self.config.path("~/.kube/config")
        present = path.is_file()
        checks = [Check("kubeconfig present", present, str(path),
                        "" if present else "set [kubernetes].kubeconfig or KUBECONFIG to your cluster's kubeconfig")]
        if present:
            try:
                cluster = self.cluster
                checks.append(Check("kubeconfig context", True, f"{cluster.context or '(current)'} -> {cluster.server}"))
            except MlopsError as exc:
                checks.append(Check("kubeconfig context", False, exc.message, exc.hint or ""))
                return checks
            try:
                version = cluster.request("GET", "/version", what="the API server version")
                checks.append(Check("Kubernetes API server", True, f"{cluster.server}: {version.get('gitVersion', '?')}"))
            except MlopsError as exc:
                checks.append(Check("Kubernetes API server", False, exc.message, exc.hint or ""))
        return checks

    # --- secrets ---------------------------------------------------------------------------------

    def _gateway_credentials(self, existing: dict[str, Any] | None) -> tuple["GatewayCredentials", bool]:
        """(credentials, generated): env first, then the cluster's Secret, else a new random password."""
        import secrets as pysecrets

        from charts.secrets import GatewayCredentials

        from ..common.secrets import Secrets

        env = Secrets.from_env()
        live = secret_values(existing) if existing else {}
        user = env.gateway_user or live.get("user") or self.config.gateway.user
        password, generated = env.gateway_password or live.get("password"), False
        if not password or (not env.gateway_password and live.get("user") != user):
            password, generated = pysecrets.token_urlsafe(18), True
        return GatewayCredentials(user, password), generated

    def _platform_secrets(self) -> tuple["PlatformSecrets", bool]:
        from charts import secrets as chart_secrets

        existing = self.cluster.get(chart_secrets.gateway_auth(self.config, None))
        gateway, generated = self._gateway_credentials(existing)
        s3 = None
        if chart_secrets.uses_s3_keys(self.config):
            key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
            if not key or not secret:
                raise PreflightError("MLflow artifacts are in S3 without an IRSA role, but AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set",
                                     hint="export both (they are stored only in the mlflow-s3 Secret), or set [kubernetes].mlflow_role_arn")
            s3 = (key, secret)
        return chart_secrets.PlatformSecrets(gateway=gateway, s3=s3), generated

    # --- up / down -------------------------------------------------------------------------------

    def up(self, options: UpOptions, reporter: Reporter, confirm: Confirm) -> Outcome:
        from charts.platform import platform_steps
        from charts.upstream import verify_all

        cluster = self.cluster  # an unusable kubeconfig fails here, before any manifest is downloaded
        verify_all(self.config)
        platform_secrets, generated = self._platform_secrets()
        steps = platform_steps(self.config, platform_secrets)  # everything renders before anything is written
        for obj in (o for step in steps for o in step.objects):
            cluster.learn(obj)
        outcome = Outcome(info={"context": cluster.context, "server": cluster.server, "namespace": self.config.kubernetes.namespace})
        if options.dry_run:
            for step in steps:
                if names := foreign(cluster, step.objects):
                    what = "reused" if options.reuse_existing else "refused"
                    outcome.steps.append(StepResult(step.title, what, f"installed by someone else: {', '.join(names)}"
                                                    + ("" if options.reuse_existing else "; up refuses unless --reuse-existing")))
                    continue
                for obj in _ordered(step.objects):
                    outcome.steps.append(StepResult(describe(obj), cluster.plan(obj), step.title))
            outcome.info["dry_run"] = "nothing was written"
            return outcome
        self._refuse_terminating_namespaces(steps)
        self._check_storage_classes(steps)
        reused = self._foreign_components(steps, options.reuse_existing)
        for step in steps:
            if step.key in reused:
                outcome.steps.append(StepResult(step.title, "reused", f"installed by someone else, left as it is: {reused[step.key]}"))
                reporter.warn(f"{step.title}: reusing what is installed ({reused[step.key]}); mlops neither changes nor deletes it")
                continue
            outcome.steps += self._apply_step(step, reporter)
        outcome.info["ingress"] = f"https://{self.config.kubernetes.ingress_host}"
        if generated:
            # Printed once: from now on it lives only in the Secret (`mlops predict` reads it there).
            outcome.info["gateway_user"] = platform_secrets.gateway.user
            outcome.info["gateway_password"] = platform_secrets.gateway.password
        return outcome

    def _refuse_terminating_namespaces(self, steps: list[Any]) -> None:
        """A namespace being deleted takes everything applied into it along (NamespaceLifecycle)."""
        for ns in (o for step in steps for o in step.objects if o["kind"] == "Namespace"):
            live = self.cluster.get(ns) or {}
            if (live.get("metadata") or {}).get("deletionTimestamp"):
                held = "; ".join(c.get("message", "") for c in (live.get("status") or {}).get("conditions") or []
                                 if c.get("status") == "True" and c.get("message"))
                raise PreflightError(
                    f"namespace {ns['metadata']['name']} is being deleted (Terminating){': ' + held if held else ''}",
                    hint="wait until it is gone (`mlops down --target kubernetes` waits and names what holds it), then re-run")

    def _check_storage_classes(self, steps: list[Any]) -> None:
        """Every volume claim needs a StorageClass that exists, or a default one: without it the claim
        stays Pending for good and its pods never schedule. EKS clusters created at 1.30 or later keep
        gp2 without the default annotation (communities.sas.com/t5/SAS-Communities-Library/Amazon-EKS-1-30-no-longer-assigns-a-default-storage-class/ta-p/953301)."""
        claims = [o for step in steps for o in step.objects if o["kind"] == "PersistentVolumeClaim"]
        if not claims:
            return
        classes = self.cluster.list_objects("storage.k8s.io/v1", "StorageClass")
        names = sorted(c["metadata"]["name"] for c in classes)
        default = [n for c in classes for n in [c["metadata"]["name"]]
                   if (c["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true"]
        wanted = {o["spec"].get("storageClassName", "") for o in claims}
        have = ", ".join(names) or "none"
        if "" in wanted and not default:
            raise PreflightError(f"the cluster has no default StorageClass, so the volumes of MLflow and the predictions log would stay Pending (StorageClasses: {have})",
                                 hint="set [kubernetes].storage_class to one of them (on EKS: gp3 or gp2), or mark one as the default")
        missing = sorted(w for w in wanted if w and w not in names)
        if missing:
            raise PreflightError(f"[kubernetes].storage_class {missing[0]!r} does not exist in the cluster (StorageClasses: {have})",
                                 hint="set [kubernetes].storage_class to one of them")

    def _foreign_components(self, steps: list[Any], reuse: bool) -> dict[str, str]:
        """step key -> what of it someone else installed; refuses unless `reuse` (nothing is written yet)."""

        found = {step.key: ", ".join(names) for step in steps if (names := foreign(self.cluster, step.objects))}
        if found and not reuse:
            lines = "\n  ".join(f"{next(s.title for s in steps if s.key == key)}: {what}" for key, what in found.items())
            raise PreflightError(
                f"the cluster already runs components that mlops did not install:\n  {lines}",
                hint="re-run with --reuse-existing to use them as they are (mlops will not change or delete them), "
                     "or remove them first; use another cluster or context for a clean install")
        return found

    def _apply_step(self, step: Any, reporter: Reporter) -> list[StepResult]:
        cluster = self.cluster
        deadline = time.monotonic() + self.config.kubernetes.step_timeout_s
        objects = _ordered(step.objects)
        reporter.start(step.key, step.title, total=len(objects))
        results, counts = [], {"create": 0, "update": 0, "unchanged": 0}
        for i, obj in enumerate(objects):
            if i and obj["kind"] not in FIRST_KINDS and objects[i - 1]["kind"] in FIRST_KINDS:
                # CRDs Established before any object of their kinds is applied
                for crd in (o for o in objects if o["kind"] == "CustomResourceDefinition"):
                    reporter.update(step.key, info=f"waiting for {describe(crd)}")
                    cluster.wait_ready(crd, deadline)
            action = cluster.apply(obj, deadline)
            counts[action] += 1
            results.append(StepResult(describe(obj), action, step.title))
            reporter.advance(step.key, object=describe(obj), action=action)
        for obj in objects:
            if obj["kind"] in READY_CONDITION:  # CRDs of a CRD-only step are waited on here too
                reporter.update(step.key, info=f"waiting for {describe(obj)}")
                cluster.wait_ready(obj, deadline, on_poll=lambda last, o=obj: reporter.update(step.key, info=f"{describe(o)}: {last}"))
        reporter.finish(step.key, ", ".join(f"{n} {a}" for a, n in counts.items() if n) or "nothing to do")
        return results

    def down(self, options: DownOptions, reporter: Reporter, confirm: Confirm) -> Outcome:
        """Delete in dependency order, one stage at a time, each waited on until gone.

        The deployed model goes first, while KServe and Knative still run to remove their finalizers
        (`inferenceservice.finalizers`, Knative's route finalizer); then the steps of `up` in reverse.
        Only objects we applied are deleted (kubernetes_ownership): a reused component stays."""
        from charts.platform import platform_steps

        cluster = self.cluster
        if options.purge and not options.yes and not confirm(
                "Also delete CRDs, volumes (MLflow runs and models, metrics, logs) and the namespace?"):
            raise MlopsError("not confirmed: nothing was deleted", hint="re-run with --yes to skip the question")
        steps = platform_steps(self.config, None)
        for obj in (o for step in steps for o in step.objects):
            cluster.learn(obj)
        outcome = Outcome(info={"context": cluster.context, "namespace": self.config.kubernetes.namespace})
        ours = self.config.kubernetes.namespace
        model = self.config.serving.model_name
        # What KServe and Knative create for the model: gone before their controllers are deleted.
        children = [{"apiVersion": "serving.knative.dev/v1", "kind": kind, "metadata": {"name": f"{model}-predictor", "namespace": ours}}
                    for kind in ("Service", "Route")]
        plan = [("deployed model", [self._isvc_identity(), self._history_identity()], children)]
        plan += [(s.title, list(reversed(_ordered(s.objects))), []) for s in reversed(steps)]
        reporter.start("down", "deleting", total=sum(len(objs) for _, objs, _ in plan))
        for title, objects, also_wait in plan:
            deleted = []
            for obj in objects:
                kept = obj["kind"] in KEPT_WITHOUT_PURGE or (obj["kind"] == "Namespace" and obj["metadata"]["name"] == ours)
                live = None if kept and not options.purge else cluster.get(obj)
                if kept and not options.purge:
                    outcome.steps.append(StepResult(describe(obj), "kept", "data/CRD: only with --purge"))
                elif live is None:
                    outcome.steps.append(StepResult(describe(obj), "absent", title))
                elif not is_ours(live):
                    outcome.steps.append(StepResult(describe(obj), "kept", "not installed by mlops"))
                else:
                    cluster.delete(obj)
                    deleted.append(obj)
                    outcome.steps.append(StepResult(describe(obj), "deleted", title))
                reporter.advance("down", object=describe(obj))
            if deleted or also_wait:
                reporter.update("down", info=f"{title}: waiting until deleted")
                cluster.wait_gone(deleted + also_wait, time.monotonic() + self.config.kubernetes.step_timeout_s,
                                  on_poll=lambda last, t=title: reporter.update("down", info=f"{t}: {last}"))
        reporter.finish("down", "done")
        return outcome

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> list[ComponentStatus]:
        cluster = self.cluster
        out = []
        for component, namespace, name in COMPONENTS:
            live = cluster.get({"apiVersion": "apps/v1", "kind": "Deployment",
                                "metadata": {"name": name, "namespace": namespace or self.config.kubernetes.namespace}})
            if live is None:
                out.append(ComponentStatus(component, detail="not installed", expected=False))
                continue
            available = condition(live, "Available")
            st = live.get("status") or {}
            image = (((live.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers", [{}])[0].get("image", "")
            out.append(ComponentStatus(
                component, healthy=bool(available and available.get("status") == "True"), version=image.rpartition(":")[2],
                detail=f"{st.get('readyReplicas', 0)}/{st.get('replicas', 0)} ready"))
        out.append(self._isvc_status())
        return out

    def _isvc_status(self) -> ComponentStatus:
        from charts.inference_service import VERSION_ANNOTATION

        live = self.cluster.get(self._isvc_identity())
        if live is None:
            return ComponentStatus("predictor", detail="no model deployed (mlops deploy --target kubernetes)", expected=False)
        ready = condition(live, "Ready")
        version = live["metadata"].get("annotations", {}).get(VERSION_ANNOTATION, "")
        split = self._rollouts().split(live)
        return ComponentStatus("predictor", url=(live.get("status") or {}).get("url", ""),
                               healthy=bool(ready and ready.get("status") == "True"), version=version,
                               detail=f"traffic: {split.summary() if split else '-'}")

    # --- deploy ----------------------------------------------------------------------------------

    def _isvc_identity(self) -> dict[str, Any]:
        from charts.inference_service import API_VERSION, KIND

        return {"apiVersion": API_VERSION, "kind": KIND,
                "metadata": {"name": self.config.serving.model_name, "namespace": self.config.kubernetes.namespace}}

    def _rollouts(self) -> Rollouts:
        from charts.inference_service import VERSION_ANNOTATION


        return Rollouts(self.cluster, self._isvc_identity(), VERSION_ANNOTATION)

    def _history_identity(self) -> dict[str, Any]:
        from charts.objects import config_map

        return config_map(self.config, self.config.serving.model_name + HISTORY_SUFFIX, "predictor", {})

    def _history(self) -> dict[str, dict[str, Any]]:
        """The InferenceService spec each deployed version was served with, by version (for rollback)."""
        live = self.cluster.get(self._history_identity())
        data = (live or {}).get("data") or {}
        return {k.removeprefix("v"): json.loads(v) for k, v in data.items() if k.startswith("v") and v}

    def _remember(self, record: dict[str, Any]) -> None:
        history = self._history()
        history.pop(record["version"], None)
        history[record["version"]] = record
        kept = list(history.items())[-HISTORY_KEPT:]
        cm = self._history_identity()
        cm["data"] = {f"v{v}": json.dumps(r, sort_keys=True) for v, r in kept}
        self.cluster.apply(cm)

    def deploy(self, options: DeployOptions, reporter: Reporter) -> Outcome:
        from charts import inference_service


        identity = self._isvc_identity()
        live = self.cluster.get(identity)
        rollouts = self._rollouts()
        deadline = time.monotonic() + self.config.serving.ready_timeout_s
        if options.rollback:
            return self._rollback(live, rollouts, reporter)
        if options.promote:
            canary = None if live is None else live["spec"]["predictor"].get("canaryTrafficPercent")
            if canary is None:
                raise MlopsError("there is no canary to promote", hint="start one with: mlops deploy --version N --canary 10")
            if canary == 0:
                raise MlopsError("the canary was rolled back (0% of the traffic): promoting it would send it everything",
                                 hint="deploy a version instead: mlops deploy --version N --target kubernetes")
            isvc = _isvc_from_record(identity, _record(live))
            isvc["spec"]["predictor"].pop("canaryTrafficPercent", None)
            version, canary = _record(live)["version"], None
        else:
            from ..registry.versions import resolve_version
            from ..registry.serving_runtime import served_artifact_uri

            ref = resolve_version(self.config, options.version, options.alias)
            served = served_artifact_uri(self.config, ref, reporter)  # the onnx-int8 export, made once per version
            isvc = inference_service.render(self.config, version=ref.version, source_uri=ref.location,
                                            canary=options.canary, served_uri=served)
            if options.canary is not None and live is None:
                reporter.warn(f"no model is serving yet: version {ref.version} gets all traffic despite --canary {options.canary}")
            version, canary = str(ref.version), options.canary
            self._remember(_record(isvc))
        reporter.start("deploy", f"InferenceService {isvc['metadata']['name']}", total=1)
        action = self.cluster.apply(isvc)
        expected = f"version {version} ready with {canary if canary is not None else 100}% of the traffic"
        split = rollouts.wait(serving(version, canary), expected, deadline, on_poll=lambda last: reporter.update("deploy", info=last))
        gateway_action = self._point_gateway(self.cluster.get(identity) or {})
        live = self.cluster.get(identity) or {}
        reporter.finish("deploy", f"ready: {split.summary()}")
        outcome = Outcome(steps=[StepResult(f"InferenceService {isvc['metadata']['namespace']}/{isvc['metadata']['name']}", action, f"version {version}")])
        if gateway_action:
            outcome.steps.append(StepResult("Deployment gateway", gateway_action, "predictor URL"))
        outcome.info.update({"model_version": version, "url": (live.get("status") or {}).get("url", ""), "traffic": split.summary()})
        return outcome

    def _rollback(self, live: dict[str, Any] | None, rollouts: Rollouts, reporter: Reporter) -> Outcome:
        """KServe's rollback: `canaryTrafficPercent: 0` pins all traffic to the last rolled-out revision at
        once; then the spec of that version is restored (a new revision, still at 0% until it is ready)
        and the pin dropped. The revision being rolled back never gets more traffic than it had."""

        identity = self._isvc_identity()
        split = rollouts.split(live)
        if live is None or split is None:
            raise NotFoundError("nothing to roll back: no model is deployed", hint="deploy one: mlops deploy --version N --target kubernetes")
        if split.latest_created and split.latest_created != split.latest_ready:
            target = split.rolled_out or split.latest_ready   # the newest revision never got ready
        elif split.rolled_out and split.rolled_out != split.latest_ready:
            target = split.rolled_out                         # a canary is running: back to what it split with
        else:
            target = split.previous_rolled_out                # fully rolled out: KServe falls back to the previous one
        if not target or target == split.latest_ready and split.latest_created == split.latest_ready:
            raise NotFoundError("nothing to roll back to: no earlier rolled-out revision of this InferenceService",
                                hint="deploy another version first: mlops deploy --version N --target kubernetes")
        version = split.version(target)
        timeout = self.config.serving.ready_timeout_s
        reporter.start("deploy", f"rollback to version {version}", total=3)
        steps = []

        def apply(isvc: dict[str, Any], why: str) -> None:
            steps.append(StepResult(describe(isvc), self.cluster.apply(isvc), why))
            reporter.advance("deploy", object=why)

        pinned = _isvc_from_record(identity, _record(live))
        pinned["spec"]["predictor"]["canaryTrafficPercent"] = 0
        apply(pinned, f"canaryTrafficPercent 0: all traffic to {target} (version {version})")
        rollouts.wait(pinned_to(target), f"100% on revision {target}", time.monotonic() + timeout,
                      on_poll=lambda last: reporter.update("deploy", info=last))
        record = self._history().get(version)
        if record is None:
            reporter.finish("deploy", f"traffic pinned to version {version}")
            reporter.warn(f"the spec of version {version} is not recorded: the InferenceService still names version "
                          f"{_record(live)['version']} at 0%; run `mlops deploy --version {version} --target kubernetes` to clean up")
        else:
            restored = _isvc_from_record(identity, record)
            restored["spec"]["predictor"]["canaryTrafficPercent"] = 0
            apply(restored, f"spec of version {version} restored, still at 0% until ready")
            rollouts.wait(lambda s: pinned_to(target)(s) and s.latest_created == s.latest_ready and s.version(s.latest_ready) == version,
                          f"a ready revision of version {version} while {target} keeps 100%", time.monotonic() + timeout,
                          on_poll=lambda last: reporter.update("deploy", info=last))
            final = _isvc_from_record(identity, record)
            final["spec"]["predictor"].pop("canaryTrafficPercent", None)
            apply(final, "pin dropped")
            rollouts.wait(serving(version, None), f"version {version} with 100% of the traffic", time.monotonic() + timeout,
                          on_poll=lambda last: reporter.update("deploy", info=last))
        now = rollouts.split(self.cluster.get(identity))
        reporter.finish("deploy", f"rolled back: {now.summary() if now else '-'}")
        outcome = Outcome(steps=steps)
        outcome.info.update({"model_version": version, "traffic": now.summary() if now else ""})
        return outcome

    def _point_gateway(self, isvc: dict[str, Any]) -> str | None:
        """Make the gateway call the InferenceService's cluster address (stable across versions).

        The address is `charts.inference_service.predictor_url`, the one `up` renders too, so this
        re-apply is "unchanged" unless the gateway was installed by an older version."""
        from charts import gateway

        deployment = gateway.objects(self.config)[0]
        if self.cluster.get(deployment) is None:
            return None  # the platform is not installed; `mlops up` renders the gateway with this address
        return self.cluster.apply(deployment)

    # --- predict / logs --------------------------------------------------------------------------

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        import httpx

        from charts import secrets as chart_secrets

        from ..common.secrets import Secrets

        env = Secrets.from_env()
        user, password = env.gateway_user or self.config.gateway.user, env.gateway_password
        if not password:
            live = self.cluster.get(chart_secrets.gateway_auth(self.config, None)) or {}
            values = secret_values(live)
            user, password = values.get("user", user), values.get("password")
        if not password:
            raise PreflightError("no gateway credentials: MLOPS_GATEWAY_PASSWORD is unset and the cluster has no gateway Secret",
                                 hint="run `mlops up --target kubernetes` first, or export MLOPS_GATEWAY_USER/MLOPS_GATEWAY_PASSWORD")
        url, headers, extensions = edge_request(self.config, "/predict/batch")
        verify = edge_trust(self.config, self.cluster)
        try:
            with httpx.Client(verify=verify, timeout=self.config.gateway.timeout_s + 5) as client:
                response = client.post(url, json={"texts": texts}, auth=(user, password), headers=headers, extensions=extensions)
        except httpx.ConnectError as exc:
            if isinstance(exc.__context__, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise PreflightError(f"the edge at {url} presented a certificate we do not trust: {exc}",
                                     hint="self-signed: the Secret's certificate is trusted (leave [kubernetes].tls_issuer empty); "
                                          "a private CA: set [kubernetes].tls_ca_bundle") from None
            raise UnreachableError(f"cannot reach the gateway's public listener at {url}: {exc.__class__.__name__}",
                                   hint=f"make {self.config.kubernetes.ingress_host} resolve to the Envoy Gateway load balancer "
                                        "(envoy-gateway-system), or set [kubernetes].ingress_address (e.g. a port-forward)") from None
        except httpx.HTTPError as exc:
            raise UnreachableError(f"cannot reach the gateway's public listener at {url}: {exc.__class__.__name__}",
                                   hint=f"make {self.config.kubernetes.ingress_host} resolve to the Envoy Gateway load balancer") from None
        shed = GatewayOverloaded.from_reply(response.status_code, response.headers, response.text[:200])
        if shed is not None:
            raise shed  # predict --file waits as asked and sends the batch again
        if response.status_code != 200:
            raise MlopsError(f"gateway at {url} answered {response.status_code}: {response.text[:200]}",
                             hint="401: wrong credentials; 503: no model ready (mlops deploy --target kubernetes)")
        return response.json()["predictions"]

    def logs(self, component: str, *, follow: bool = False, lines: int = 50) -> Iterator[str]:
        known = {c for c, _, _ in COMPONENTS} | {"predictor"}
        if component not in known:
            raise NotFoundError(f"unknown component {component!r}", hint=f"one of: {', '.join(sorted(known))}")
        ns = self.config.kubernetes.namespace
        if component == "predictor":
            selector = f"serving.kserve.io/inferenceservice={self.config.serving.model_name}"
        else:
            match = next(c for c in COMPONENTS if c[0] == component)
            ns = match[1] or ns
            selector = f"app.kubernetes.io/name={match[2]}" if not match[1] else ""
            if match[1]:  # upstream components: their own labels; pick pods by the Deployment's selector
                dep = self.cluster.get({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": match[2], "namespace": ns}}) or {}
                labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
                selector = ",".join(f"{k}={v}" for k, v in labels.items())
        return self.cluster.pod_logs(ns, selector, lines=lines, follow=follow)


def _ordered(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Namespaces, then CRDs, then the rest in manifest order (what kubectl apply -f effectively needs)."""
    rank = {kind: i for i, kind in enumerate(FIRST_KINDS)}
    return sorted(objects, key=lambda o: rank.get(o["kind"], 2))


def _record(isvc: dict[str, Any]) -> dict[str, Any]:
    """What rollback needs of an InferenceService: its spec and version annotation."""
    from charts.inference_service import VERSION_ANNOTATION

    return {"version": isvc["metadata"].get("annotations", {}).get(VERSION_ANNOTATION, ""),
            "spec": copy.deepcopy(isvc["spec"])}


def _isvc_from_record(identity: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    from charts.inference_service import VERSION_ANNOTATION, isvc_labels

    return {**identity,
            "metadata": {**identity["metadata"], "labels": isvc_labels(),
                         "annotations": {"serving.kserve.io/deploymentMode": "Serverless",
                                         VERSION_ANNOTATION: record["version"]}},
            "spec": copy.deepcopy(record["spec"])}
