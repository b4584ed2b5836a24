"""Model rollouts on KServe: what the live InferenceService routes where, and waiting for a change to land.

KServe (v0.20.0, Serverless mode) keeps the traffic split in the InferenceService's status:
`status.components.predictor` has `latestCreatedRevision`, `latestReadyRevision`,
`latestRolledoutRevision` (the last revision that had 100%), `previousRolledoutRevision` and `traffic`
(Knative's route targets, each with `revisionName`, `percent`, `latestRevision`). With
`canaryTrafficPercent` set, the latest ready revision gets that share and the last rolled-out
revision the rest (pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go).
`canaryTrafficPercent: 0` pins 100% to the last rolled-out revision: KServe's documented rollback
("Rollback and pin the previous model",
https://kserve.github.io/website/docs/model-serving/predictive-inference/rollout-strategies/canary-example).

Which model version a revision serves is read from the revision itself: KServe copies the
InferenceService's annotations (ours: `mlops.dev/model-version`) onto the Knative revision template
(pkg/controller/v1beta1/inferenceservice/components/predictor.go), so every Revision carries it.
`status.observedGeneration` is not a reliable "KServe saw this spec" signal (PropagateStatus copies
the Knative Service's generation into it), so a wait checks the revisions and the split instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..adapters.kube_apply import FIRST_POLL_S, KubeTimeout
from ..adapters.kube_objects import condition, describe

if TYPE_CHECKING:
    from ..adapters.kube_apply import KubeCluster

KNATIVE = "serving.knative.dev/v1"


@dataclass
class Split:
    """The routed traffic of one InferenceService, by revision, as its status reports it."""
    ready: bool
    latest_created: str
    latest_ready: str
    rolled_out: str
    previous_rolled_out: str
    targets: list[tuple[str, int, bool]] = field(default_factory=list)  # (revision, percent, latestRevision)
    versions: dict[str, str] = field(default_factory=dict)              # revision -> model version

    def percent(self, revision: str) -> int:
        return sum(p for r, p, _ in self.targets if r == revision)

    def latest_share(self) -> int:
        return sum(p for _, p, latest in self.targets if latest)

    def version(self, revision: str) -> str:
        return self.versions.get(revision, "") or revision

    def by_version(self) -> list[tuple[str, int]]:
        shares: dict[str, int] = {}
        for revision, percent, _ in sorted(self.targets, key=lambda t: t[2]):  # rolled-out first, then the latest
            shares[self.version(revision)] = shares.get(self.version(revision), 0) + percent
        return [(v, p) for v, p in shares.items() if p > 0] or [(v, p) for v, p in shares.items()]

    def summary(self) -> str:
        if not self.targets:
            return "no traffic routed yet"
        parts = [f"v{v} {p}%" for v, p in self.by_version()]
        return ", ".join(parts) + (" (canary)" if len(parts) > 1 else "")


class Rollouts:
    def __init__(self, cluster: "KubeCluster", identity: dict[str, Any], version_annotation: str) -> None:
        self.cluster = cluster
        self.identity = identity
        self.annotation = version_annotation
        self._versions: dict[str, str] = {}

    def split(self, live: dict[str, Any] | None) -> Split | None:
        if live is None:
            return None
        comp = ((live.get("status") or {}).get("components") or {}).get("predictor") or {}
        ready = condition(live, "Ready")
        s = Split(ready=bool(ready and ready.get("status") == "True"),
                  latest_created=comp.get("latestCreatedRevision", ""), latest_ready=comp.get("latestReadyRevision", ""),
                  rolled_out=comp.get("latestRolledoutRevision", ""), previous_rolled_out=comp.get("previousRolledoutRevision", ""),
                  targets=[(t.get("revisionName", ""), int(t.get("percent") or 0), bool(t.get("latestRevision")))
                           for t in comp.get("traffic") or []])
        for revision in {s.latest_created, s.latest_ready, s.rolled_out, s.previous_rolled_out, *(r for r, _, _ in s.targets)} - {""}:
            s.versions[revision] = self.revision_version(revision)
        return s

    def revision_version(self, revision: str) -> str:
        if revision not in self._versions:
            ns = self.identity["metadata"]["namespace"]
            live = self.cluster.get({"apiVersion": KNATIVE, "kind": "Revision", "metadata": {"name": revision, "namespace": ns}})
            found = ((live or {}).get("metadata", {}).get("annotations") or {}).get(self.annotation, "")
            if not found:
                return ""
            self._versions[revision] = found
        return self._versions[revision]

    def wait(self, done: Callable[[Split], bool], expected: str, deadline: float, on_poll: Callable[[str], None] | None = None,
             timeout_setting: str = "[serving].ready_timeout_s") -> Split:
        """Poll the live status until `done`; on timeout say what was expected, what is, and the events."""
        delay, last = FIRST_POLL_S, "not created yet"
        while True:
            s = self.split(self.cluster.get(self.identity))
            if s is not None and done(s):
                return s
            if s is not None:
                cond = condition(self.cluster.get(self.identity), "Ready") or {}
                last = (f"traffic {s.summary()}; latest revision {s.latest_created or '-'} "
                        f"({'ready' if s.latest_created and s.latest_created == s.latest_ready else 'not ready'}); "
                        f"Ready={cond.get('status', '?')} {cond.get('reason', '')} {cond.get('message', '')}").strip()
            if on_poll:
                on_poll(last)
            if time.monotonic() >= deadline:
                events = self.cluster.events(self.identity)
                shown = "\n    ".join(events) if events else "(no events)"
                raise KubeTimeout(
                    f"timed out waiting for {describe(self.identity)}: expected {expected}; now: {last}\n  last events:\n    {shown}",
                    hint=f"look at the events above (`kubectl describe inferenceservice`); raise {timeout_setting} if it is only slow",
                )
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.01)))
            delay = min(delay * 2, self.cluster.poll_s)


def serving(version: str, canary: int | None) -> Callable[[Split], bool]:
    """Done when the newest revision is ready, serves `version`, and has the share the spec asks for.

    The first revision always gets 100%, whatever the canary: KServe splits only once a revision was
    rolled out."""
    def done(s: Split) -> bool:
        if not (s.ready and s.latest_created and s.latest_created == s.latest_ready and s.version(s.latest_ready) == version):
            return False
        if canary is None or all(latest for _, _, latest in s.targets):
            return s.latest_share() == 100
        return s.latest_share() == canary
    return done


def pinned_to(revision: str) -> Callable[[Split], bool]:
    """Done when `revision` has all the traffic through a non-latest target (canaryTrafficPercent: 0)."""
    return lambda s: any(r == revision and p == 100 and not latest for r, p, latest in s.targets)
