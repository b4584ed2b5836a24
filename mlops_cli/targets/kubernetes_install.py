"""`mlops up|down --target kubernetes`: the platform's steps applied in order, and deleted in reverse.

`up` applies the steps of `charts.platform.platform_steps` in order (server-side apply, CRDs waited until
Established, Deployments until rolled out, one deadline per step), after refusing what would never
converge (a Terminating namespace, no usable StorageClass) or would take over someone else's install
(kubernetes_ownership.py). A reused install (`--reuse-existing`) is left as it is except for what the step
needs of it: our own objects on top (`Step.own`: the edge's Secret, Gateway, routes) and our settings in
its ConfigMaps (`Step.patches`), set as a separate field manager so the ConfigMap stays theirs.
`down` deletes in dependency order and waits for each stage to be gone.

`KubernetesInstall` is a part of `KubernetesTarget` (targets/kubernetes.py), which gives it `config`,
`cluster`, and (from KubernetesDeploy) `_isvc_identity` and `_history_identity`.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ..adapters.kube_objects import READY_CONDITION, describe, secret_values
from ..common.errors import MlopsError, PreflightError
from ..common.progress import Reporter
from .base import Confirm, DownOptions, Outcome, StepResult, UpOptions
from .kubernetes_ownership import foreign, is_ours
from .kubernetes_reused import remember, restore

if TYPE_CHECKING:
    from charts.secrets import GatewayCredentials, PlatformSecrets


# Applied before the rest of a step (CRDs then waited Established): the objects live in them or are of their kinds.
FIRST_KINDS = ("Namespace", "CustomResourceDefinition")
KEPT_WITHOUT_PURGE = {"CustomResourceDefinition", "PersistentVolumeClaim"}
MODEL_STAGE = "deployed model"


def _ordered(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Namespaces, then CRDs, then the rest in manifest order (what kubectl apply -f effectively needs)."""
    rank = {kind: i for i, kind in enumerate(FIRST_KINDS)}
    return sorted(objects, key=lambda o: rank.get(o["kind"], 2))


HELM_HOOK = "helm.sh/hook"


def _install_hooks(cluster: Any, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Helm install/upgrade hooks of a step to leave out because nothing else in it changes.

    A release file rendered from a chart keeps the chart's hooks as plain objects: Envoy Gateway's
    install.yaml has its certgen Job (`helm.sh/hook: pre-install, pre-upgrade`, ttlSecondsAfterFinished 30,
    so the TTL controller deletes it once done). Helm runs such a hook only on an install or upgrade;
    applied on every `up`, the Job was created again each time, so a second `up` was never unchanged."""
    hooks = [o for o in objects if {"pre-install", "pre-upgrade"} & {
        h.strip() for h in ((o["metadata"].get("annotations") or {}).get(HELM_HOOK) or "").split(",")}]
    if not hooks:
        return []
    from ..adapters.kube_apply import KubeApiError

    try:
        if any(cluster.plan(o) != "unchanged" for o in objects if not any(o is h for h in hooks)):
            return []
    except KubeApiError:  # a kind not served yet: an install
        return []
    return hooks


class KubernetesInstall:
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

    def _admin_credentials(self, existing: dict[str, Any] | None, user: str) -> "GatewayCredentials":
        """Grafana's admin and the gateway's /admin: MLOPS_GATEWAY_ADMIN_PASSWORD, else the cluster's Secret,
        else a new random password; never printed (`up` says how to read it from the Secret)."""
        import secrets as pysecrets

        from charts.secrets import GatewayCredentials

        from ..common.secrets import Secrets

        live = secret_values(existing) if existing else {}
        password = Secrets.from_env().gateway_admin_password or live.get("password") or pysecrets.token_urlsafe(18)
        return GatewayCredentials(user, password)

    def _platform_secrets(self) -> tuple["PlatformSecrets", bool]:
        from charts import secrets as chart_secrets

        existing = self.cluster.get(chart_secrets.gateway_auth(self.config, None))
        gateway, generated = self._gateway_credentials(existing)
        admin = self._admin_credentials(self.cluster.get(chart_secrets.admin_auth(self.config, None)), gateway.user)
        s3 = None
        if chart_secrets.uses_s3_keys(self.config):
            key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
            if not key or not secret:
                raise PreflightError("MLflow artifacts are in S3 without an IRSA role, but AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set",
                                     hint="export both (they are stored only in the mlflow-s3 Secret), or set [kubernetes].mlflow_role_arn")
            s3 = (key, secret)
        return chart_secrets.PlatformSecrets(gateway=gateway, s3=s3, admin=admin), generated

    def up(self, options: UpOptions, reporter: Reporter, confirm: Confirm) -> Outcome:
        from charts.platform import platform_steps
        from charts.upstream import verify_all

        cluster = self.cluster  # an unusable kubeconfig fails here, before any manifest is downloaded
        recorded = [r.key for r in verify_all(self.config) if r.action == "recorded"]
        platform_secrets, generated = self._platform_secrets()
        steps = platform_steps(self.config, platform_secrets)  # everything renders before anything is written
        for obj in (o for step in steps for o in step.objects):
            cluster.learn(obj)
        outcome = Outcome(info={"context": cluster.context, "server": cluster.server, "namespace": self.config.kubernetes.namespace})
        if recorded:
            outcome.info["mlops.lock"] = f"recorded the sha256 of {', '.join(recorded)}: commit mlops.lock"
        if options.dry_run:
            for step in steps:
                if names := foreign(cluster, step.objects):
                    what = "reused" if options.reuse_existing else "refused"
                    outcome.steps.append(StepResult(step.title, what, f"installed by someone else: {', '.join(names)}"
                                                    + ("" if options.reuse_existing else "; up refuses unless --reuse-existing")))
                    if options.reuse_existing:
                        outcome.steps += [StepResult(describe(o), cluster.plan(o), step.title) for o in _ordered(step.own)]
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
                outcome.steps.append(StepResult(step.title, "reused", f"installed by someone else, kept but for our settings: {reused[step.key]}"))
                reporter.warn(f"{step.title}: reusing what is installed ({reused[step.key]}); mlops deletes none of it and "
                              "changes only its own settings in it")
                outcome.steps += self._apply_on_reused(step, reporter)
                continue
            outcome.steps += self._apply_step(step, reporter)
        outcome.info["ingress"] = f"https://{self.config.kubernetes.ingress_host}"
        from charts.secrets import ADMIN_AUTH

        # Never the value: how to read it (Grafana's admin login, and the gateway's /admin routes).
        outcome.info["admin_password"] = (f"kubectl -n {self.config.kubernetes.namespace} get secret {ADMIN_AUTH} "
                                          "-o jsonpath='{.data.password}' | base64 -d")
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

    def _apply_on_reused(self, step: Any, reporter: Reporter) -> list[StepResult]:
        """What a reused step still needs: our settings in its ConfigMaps, then our own objects."""
        from dataclasses import replace

        results = []
        for patch in step.patches:
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": patch.name, "namespace": patch.namespace}}
            live = self.cluster.get(cm)
            if live is None:
                raise PreflightError(f"{step.title}: the install being reused has no ConfigMap {patch.namespace}/{patch.name}, "
                                     f"where mlops must set {', '.join(patch.values)} ({patch.why})",
                                     hint="install the component from its release manifest, or let mlops install it")
            remember(self.cluster, self.config.kubernetes.namespace, patch, live)  # theirs, for `down` to put back
            changed = patch.apply(live, f"{step.title} (reused)")["data"]
            keys = [patch.json_key] if patch.json_key else list(patch.values)
            action = self.cluster.apply_settings({**cm, "data": {k: changed[k] for k in keys}})
            results.append(StepResult(describe(cm), action, f"{step.title}: {patch.why}"))
        if step.own:
            results += self._apply_step(replace(step, objects=step.own), reporter)
        return results

    def _apply_step(self, step: Any, reporter: Reporter) -> list[StepResult]:
        cluster = self.cluster
        deadline = time.monotonic() + self.config.kubernetes.step_timeout_s
        objects = _ordered(step.objects)
        reporter.start(step.key, step.title, total=len(objects))
        results, counts = [], {"create": 0, "update": 0, "unchanged": 0}
        hooks = _install_hooks(cluster, objects)
        for i, obj in enumerate(objects):
            if any(obj is h for h in hooks):  # nothing else of the step changes: Helm would not run it either
                counts["unchanged"] += 1
                results.append(StepResult(describe(obj), "unchanged", step.title))
                reporter.advance(step.key, object=describe(obj), action="unchanged")
                continue
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
        (`inferenceservice.finalizers`, Knative's route finalizer); then the steps of `up` in reverse, each
        in two stages: our own objects on top of the upstream install (`Step.own`), waited until gone, then
        the upstream install. Envoy Gateway's controller removes its `gateway-exists-finalizer` from our
        GatewayClass once no Gateway uses it, and only while it runs (envoyproxy/gateway v1.8.3
        internal/provider/kubernetes/controller.go, removeFinalizer), so its Deployment must outlive them.
        Only objects we applied are deleted (kubernetes_ownership): a reused component stays, with the values
        our settings replaced in its ConfigMaps put back (kubernetes_reused)."""
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
        plan = [(MODEL_STAGE, [self._isvc_identity(), self._history_identity()], children)]
        for s in reversed(steps):
            own = {describe(o) for o in s.own}
            if own:
                plan.append((f"{s.title} (ours)", list(reversed(_ordered(s.own))), []))
            plan.append((s.title, list(reversed(_ordered([o for o in s.objects if describe(o) not in own]))), []))
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
            if title == MODEL_STAGE:  # no model left to route: reused installs get their settings back
                outcome.steps += restore(cluster, ours)
        reporter.finish("down", "done")
        return outcome
