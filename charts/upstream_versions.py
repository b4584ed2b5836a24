"""Which upstream releases we install, when each came out, until when it is supported, and on which
Kubernetes minors: dated facts with their sources, not memory (as mlops_cli/cloud/eks_versions.py for EKS).

Checked on AS_OF through the Go module proxy (`go list -m -json <module>@<version>` gives each tag's
time) and each project's own support page; re-check when a version in [kubernetes] changes. The module
tags behind the release names: Knative Serving knative-v1.21.2 = knative.dev/serving v0.48.2; Kourier
knative-v1.21.0 = knative.dev/net-kourier v0.48.0 (the proxy resolves no later v0.48.x tag).

`mlops doctor` warns for a configured version past its support or outside its Kubernetes minors; the
tests compare with AS_OF, never with the calendar, so time alone turns nothing red.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from mlops_cli.config.settings import Config

AS_OF = date(2026, 12, 6)

CERT_MANAGER_SOURCE = ("https://cert-manager.io/docs/releases/ (cert-manager/website content/docs/releases/README.md, "
                       "commit 776e5db, 2026-08-22)")
KNATIVE_SOURCE = ("https://github.com/knative/community/blob/main/mechanics/RELEASE-SCHEDULE.md (commit 9a14bdf, "
                  "2026-05-04): EOL = release of n+2 plus one week; min K8s at release time")
ENVOY_GATEWAY_SOURCE = ("https://gateway.envoyproxy.io/news/releases/matrix/ (envoyproxy/gateway "
                        "site/content/en/news/releases/matrix.md, commit d32f282, 2026-08-21)")
KSERVE_SOURCE = ("github.com/kserve/kserve@v0.20.0 install/v0.20.0/kserve-knative-mode-dependency-install.sh "
                 "(the set it installs) and go.mod (k8s.io/client-go v0.34.5); KServe publishes no support window")


@dataclass(frozen=True)
class UpstreamRelease:
    component: str              # the [kubernetes] version field's component: cert_manager, knative, ...
    version: str                # as [kubernetes].<component>_version names it
    released: date              # the tag's time on the Go module proxy
    supported_until: date | None   # None: no dated end yet (until_note says what ends it)
    until_note: str
    kubernetes_min: str | None  # supported Kubernetes minors, inclusive; None when not published
    kubernetes_max: str | None  # None: no upper bound published
    source: str

    def supports(self, minor: str) -> bool | None:
        """Whether Kubernetes `minor` ("1.35") is in the published range; None when none is published."""
        if self.kubernetes_min is None:
            return None
        key = _minor_key(minor)
        return key >= _minor_key(self.kubernetes_min) and (self.kubernetes_max is None or key <= _minor_key(self.kubernetes_max))

    def kubernetes(self) -> str:
        if self.kubernetes_min is None:
            return "not published"
        return f"{self.kubernetes_min} -> {self.kubernetes_max}" if self.kubernetes_max else f"{self.kubernetes_min} and later"


RELEASES: tuple[UpstreamRelease, ...] = (
    UpstreamRelease("cert_manager", "v1.21.2", date(2026, 9, 10), None, "until the release of cert-manager 1.23",
                    "1.33", "1.36", CERT_MANAGER_SOURCE),
    # What we shipped before: supported on 1.29 -> 1.33 only, and out of support since 2025-10-07.
    UpstreamRelease("cert_manager", "v1.17.0", date(2025, 1, 28), date(2025, 10, 7), "end of life 2025-10-07",
                    "1.29", "1.33", CERT_MANAGER_SOURCE),
    UpstreamRelease("knative", "knative-v1.21.2", date(2026, 3, 24), date(2026, 8, 4), "Knative 1.21 end of life",
                    "1.33", None, KNATIVE_SOURCE),
    UpstreamRelease("kourier", "knative-v1.21.0", date(2026, 1, 27), date(2026, 8, 4), "Knative 1.21 end of life",
                    "1.33", None, KNATIVE_SOURCE),
    UpstreamRelease("kserve", "v0.20.0", date(2026, 8, 6), None, "no published support window",
                    None, None, KSERVE_SOURCE),
    UpstreamRelease("envoy_gateway", "v1.8.4", date(2026, 8, 28), date(2026, 11, 8), "Envoy Gateway 1.8 end of life",
                    "1.32", "1.35", ENVOY_GATEWAY_SOURCE),
)


def _minor_key(minor: str) -> tuple[int, ...]:
    return tuple(int(part) for part in minor.split(".")[:2])


def lookup(component: str, version: str) -> UpstreamRelease | None:
    return next((r for r in RELEASES if r.component == component and r.version == version), None)


def configured(config: Config) -> list[tuple[str, str, UpstreamRelease | None]]:
    """(component, version, its table row or None) for every upstream version [kubernetes] names."""
    k = config.kubernetes
    return [(c, getattr(k, f"{c}_version"), lookup(c, getattr(k, f"{c}_version")))
            for c in ("cert_manager", "knative", "kourier", "kserve", "envoy_gateway")]


def warnings(config: Config, today: date) -> list[str]:
    """One line per configured upstream version that is unknown to the table, past its support on
    `today`, or not supported on [kubernetes].version."""
    minor = config.kubernetes.version
    out = []
    for component, version, row in configured(config):
        if row is None:
            out.append(f"{component} {version} is not in the support table (charts/upstream_versions.py, as of {AS_OF})")
            continue
        if row.supported_until is not None and today >= row.supported_until:
            out.append(f"{component} {version}: out of support since {row.supported_until} ({row.until_note})")
        if row.supports(minor) is False:
            out.append(f"{component} {version} supports Kubernetes {row.kubernetes()}, not [kubernetes].version {minor}")
    return out
