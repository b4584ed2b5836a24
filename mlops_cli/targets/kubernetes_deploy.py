"""`mlops deploy --target kubernetes`: a KServe InferenceService applied and waited on through the traffic
split its status reports (kubernetes_rollout.py); `--promote` and `--rollback` KServe's way, with the spec
of each deployed version kept in a ConfigMap for rollback.

`KubernetesDeploy` is a part of `KubernetesTarget` (targets/kubernetes.py), which gives it `config` and
`cluster`.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from ..adapters.kube_objects import describe
from ..common.errors import MlopsError, NotFoundError
from ..common.progress import Reporter
from .base import DeployOptions, Outcome, StepResult
from .kubernetes_rollout import Rollouts, pinned_to, serving

HISTORY_SUFFIX = "-deployments"
HISTORY_KEPT = 10  # versions whose InferenceService spec is kept for --rollback


class KubernetesDeploy:
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
            from ..registry.serving_runtime import served_artifact_uri
            from ..registry.versions import resolve_version

            ref = resolve_version(self.config, options.version, options.alias)
            served = served_artifact_uri(self.config, ref, reporter)  # the onnx-int8 export, made once per version
            isvc = inference_service.render(self.config, version=ref.version, source_uri=ref.location,
                                            canary=options.canary, served_uri=served)
            if options.canary is not None and live is None:
                reporter.warn(f"no model is serving yet: version {ref.version} gets all traffic despite --canary {options.canary}")
            version, canary = str(ref.version), options.canary
            if canary is not None and self._serves_already(live, rollouts, isvc, version):
                return self._nothing_to_canary(live, rollouts, version, reporter)
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
        if canary is not None and split.rolled_out and split.rolled_out != split.latest_ready:
            # what the canary gate judges: the new revision's own traffic against the one it split with
            outcome.info.update({"canary_revision": split.latest_ready, "baseline_revision": split.rolled_out})
        return outcome

    def _serves_already(self, live: dict[str, Any] | None, rollouts: Rollouts, isvc: dict[str, Any], version: str) -> bool:
        """True when `isvc` is what already serves 100%: the same version with the spec we last applied for it.
        Knative makes a revision only for a changed template (a release whose predictor did not change), so
        a canary of it would split traffic between one revision and itself and leave nothing to judge."""
        split = rollouts.split(live)
        if live is None or split is None or not split.ready or _record(live)["version"] != version:
            return False
        if split.latest_created != split.latest_ready or split.percent(split.latest_ready) != 100:
            return False  # a canary or a rollout is in progress: this deploy changes it
        applied = self._history().get(version)
        return applied is not None and _without_canary(applied["spec"]) == _without_canary(isvc["spec"])

    def _nothing_to_canary(self, live: dict[str, Any] | None, rollouts: Rollouts, version: str, reporter: Reporter) -> Outcome:
        split = rollouts.split(live)
        why = f"version {version} already serves 100% with this spec: no new revision, so nothing to canary"
        reporter.warn(why)
        outcome = Outcome(steps=[StepResult(describe(self._isvc_identity()), "unchanged", f"version {version}")])
        outcome.info.update({"model_version": version, "url": ((live or {}).get("status") or {}).get("url", ""),
                             "traffic": split.summary() if split else "", "canary_skipped": why})
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


def _record(isvc: dict[str, Any]) -> dict[str, Any]:
    """What rollback needs of an InferenceService: its spec and version annotation."""
    from charts.inference_service import VERSION_ANNOTATION

    return {"version": isvc["metadata"].get("annotations", {}).get(VERSION_ANNOTATION, ""),
            "spec": copy.deepcopy(isvc["spec"])}


def _isvc_from_record(identity: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    from charts.inference_service import DEPLOYMENT_MODE, VERSION_ANNOTATION, isvc_labels

    return {**identity,
            "metadata": {**identity["metadata"], "labels": isvc_labels(),
                         "annotations": {DEPLOYMENT_MODE: "Knative",  # as charts/inference_service.py renders it
                                         VERSION_ANNOTATION: record["version"]}},
            "spec": copy.deepcopy(record["spec"])}


def _without_canary(spec: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    spec.get("predictor", {}).pop("canaryTrafficPercent", None)
    return spec
