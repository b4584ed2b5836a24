"""KServe on the real control plane: installed by `mlops up` from its release file (the `platform` and
`kserve` fixtures) and run as its release pod (tests/controlplane_programs.py); a client for the tests.
"""

from __future__ import annotations

from .controlplane import ControlPlane

KSERVE_NS = "kserve"  # POD_NAMESPACE of the manager; kserve.yaml's objects live there


def cluster_of(plane: ControlPlane, namespace: str = "default"):
    from mlops_cli.adapters.kube_apply import KubeCluster

    return KubeCluster.connect(str(plane.kubeconfig), "", namespace)
