"""One preflight check: what was checked, whether it passed, and the exact fix when it did not.

The core's checks (platform/doctor.py) and each target's (`Target.checks()`) return these; `mlops doctor`
shows them in one table.

Example::

    Check("kubeconfig present", False, "~/.kube/config", "kind create cluster, or set KUBECONFIG")
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""
    required: bool = True  # does the current target need it?

    def as_dict(self) -> dict:
        return asdict(self)
