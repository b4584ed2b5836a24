"""Which Kubernetes versions EKS supports, until when, and what a cluster on each costs to keep.

Dated facts, not memory. Source: the "Amazon EKS Kubernetes release calendar" table of
https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html (checked 2026-11-27 through its
GitHub source, awsdocs/amazon-eks-user-guide latest/ug/versioning/kubernetes-versions.adoc, which lists 1.29
to 1.34). The stored copy of that page predates 1.35; its dates are from https://endoflife.date/amazon-eks
(which mirrors the AWS table) and follow the documented rule "standard support for 14 months after the EKS
release, extended support for the next 12". Billing for extended support starts at the beginning of the
end-of-standard-support day (UTC), says the same page. Re-check the page and update `CHECKED` when a new
minor version ships (about every four months).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import Enum

SOURCE = "https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html#kubernetes-release-calendar"
CHECKED = date(2026, 12, 6)


@dataclass(frozen=True)
class EksVersion:
    version: str
    eks_release: date
    end_of_standard: date
    end_of_extended: date


# Newest first.
VERSIONS: tuple[EksVersion, ...] = (
    # 1.36: on EKS since 2026-06-02, standard support until 2027-08-02 (devopsdreams.blogspot.com,
    # "Kubernetes 1.36 on Amazon EKS", 2026-08-16; the AWS user guide's translated pages name 1.36 as the
    # current version); the extended date follows the 14 + 12 month rule. 1.37 (upstream GA planned late
    # August 2026) had no EKS release date in any source checked on 2026-12-06: not in the table, so
    # `up` warns on it rather than refusing.
    EksVersion("1.36", date(2026, 6, 2), date(2027, 8, 2), date(2028, 8, 2)),
    EksVersion("1.35", date(2026, 1, 27), date(2027, 3, 27), date(2028, 3, 27)),
    EksVersion("1.34", date(2025, 10, 2), date(2026, 12, 2), date(2027, 12, 2)),
    EksVersion("1.33", date(2025, 5, 29), date(2026, 7, 29), date(2027, 7, 29)),
    EksVersion("1.32", date(2025, 1, 23), date(2026, 3, 23), date(2027, 3, 23)),
    EksVersion("1.31", date(2024, 9, 26), date(2025, 11, 26), date(2026, 11, 26)),
    EksVersion("1.30", date(2024, 5, 23), date(2025, 7, 23), date(2026, 7, 23)),
    EksVersion("1.29", date(2024, 1, 23), date(2025, 3, 23), date(2026, 3, 23)),
)

DEFAULT_VERSION = "1.35"

# The Cluster Autoscaler chart for each Kubernetes minor: the autoscaler's minor must match the cluster's (its
# README, "Releases"), and a chart carries the RBAC its appVersion needs (1.35's image reads resource.k8s.io
# ResourceSlices and DeviceClasses; the first chart granting them is 9.54.0, appVersion 1.35.0). Each row is
# (chart version, its appVersion), read from kubernetes/autoscaler cluster-autoscaler/charts/cluster-autoscaler/
# Chart.yaml (charts/cluster-autoscaler/Chart.yaml before 2025-10) at the commit that released it: the newest
# chart of each appVersion minor, as of the repository's state on 2026-08-22.
AUTOSCALER_CHARTS: dict[str, tuple[str, str]] = {
    "1.32": ("9.46.7", "1.32.1"),   # e5ca0f5468
    "1.33": ("9.50.1", "1.33.0"),   # 6a0afea5f3
    "1.34": ("9.53.0", "1.34.2"),   # 0aebca554d
    "1.35": ("9.59.1", "1.35.0"),   # 1a0e772d47
    "1.36": ("9.60.0", "1.36.1"),   # e096dfa2b4
}


def _minor(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit())


def autoscaler_chart(version: str) -> tuple[str, str]:
    """(chart version, appVersion) for a Kubernetes minor; for one newer than the table, its newest chart."""
    if version in AUTOSCALER_CHARTS:
        return AUTOSCALER_CHARTS[version]
    older = [v for v in AUTOSCALER_CHARTS if _minor(v) <= _minor(version)] or list(AUTOSCALER_CHARTS)
    return AUTOSCALER_CHARTS[max(older, key=_minor)]


class Support(str, Enum):
    STANDARD = "standard"
    EXTENDED = "extended"
    ENDED = "ended"          # past end of extended support: EKS creates no cluster on it
    UNKNOWN = "unknown"      # not in the table (too new for it, or a typo)


@dataclass(frozen=True)
class VersionStatus:
    version: str
    support: Support
    entry: EksVersion | None
    days_left: int | None = None  # until the current support phase ends; None when unknown or ended

    def describe(self) -> str:
        e = self.entry
        if e is None:
            known = ", ".join(v.version for v in VERSIONS)
            return f"Kubernetes {self.version} is not in the EKS version table (known: {known}; checked {CHECKED})"
        if self.support is Support.STANDARD:
            return (f"Kubernetes {self.version}: EKS standard support until {e.end_of_standard} "
                    f"({self.days_left} days left), then extended support until {e.end_of_extended}")
        if self.support is Support.EXTENDED:
            return (f"Kubernetes {self.version} is in EKS extended support since {e.end_of_standard} "
                    f"(billed at the extended-support cluster price) until {e.end_of_extended}")
        return (f"Kubernetes {self.version} left EKS extended support on {e.end_of_extended}: "
                "EKS creates no cluster on it and upgrades existing ones")


def lookup(version: str) -> EksVersion | None:
    return next((v for v in VERSIONS if v.version == version), None)


def status(version: str, today: date | None = None) -> VersionStatus:
    today = today or date.today()
    entry = lookup(version)
    if entry is None:
        return VersionStatus(version, Support.UNKNOWN, None)
    # The end dates are the first day of the next phase (billing starts at the beginning of that day, UTC).
    if today < entry.end_of_standard:
        return VersionStatus(version, Support.STANDARD, entry, (entry.end_of_standard - today).days)
    if today < entry.end_of_extended:
        return VersionStatus(version, Support.EXTENDED, entry, (entry.end_of_extended - today).days)
    return VersionStatus(version, Support.ENDED, entry)


def newest_in_standard(today: date | None = None) -> str:
    today = today or date.today()
    return next(v.version for v in VERSIONS if status(v.version, today).support is Support.STANDARD)


def upgrade_policy(version: str, configured: str, today: date | None = None) -> str:
    """The cluster's upgrade policy (EKS `upgradePolicy.supportType`).

    STANDARD (our default) means EKS upgrades the control plane at the end of standard support instead of
    silently billing extended support. A version already in extended support is only kept (rather than
    upgraded by EKS straight away) under EXTENDED, so there the policy follows the version, and `doctor`/`up`
    warn and price it.
    """
    if status(version, today).support is Support.EXTENDED:
        return "EXTENDED"
    return configured
