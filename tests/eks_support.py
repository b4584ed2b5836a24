"""The EKS stack as the tests substitute it: a FakeWorkspace playing back what a real Pulumi stack
would preview, update and output (conftest's `workspace` fixture puts it in place)."""

from __future__ import annotations

import json
from typing import Any

from mlops_cli.adapters.pulumi_workspace import ResourceStep, UpdateInfo
from tests.support import AWS_ACCOUNT as ACCOUNT

KUBECONFIG = json.dumps({"apiVersion": "v1", "clusters": [{"name": "mlops"}], "current-context": "aws"})
OUTPUTS = {
    "cluster_name": "mlops", "region": "us-east-1", "kubeconfig": KUBECONFIG, "bucket_name": "test-project-dev-a1b2",
    "irsa_role_arn": f"arn:aws:iam::{ACCOUNT}:role/platform-irsa", "vpc_id": "vpc-0abc",
    "ecr_urls": {"gateway": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/test-project/mlops-gateway"},
    "images_registry": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/test-project",
    "predictor_role_arn": f"arn:aws:iam::{ACCOUNT}:role/predictor-irsa", "storage_class": "gp3",
}


def _step(op: str, typ: str, name: str, **inputs: Any) -> ResourceStep:
    return ResourceStep(op=op, type=typ, name=name, urn=f"urn:pulumi:dev::test-project::{typ}::{name}", inputs=inputs)


def preview_steps() -> list[ResourceStep]:
    """What a first preview of the default [eks] config reports (a subset of the real ~50 resources)."""
    general = {"instanceTypes": ["m6i.large"], "scalingConfig": {"minSize": 1, "desiredSize": 2, "maxSize": 4},
               "diskSize": 50}
    return [
        _step("create", "mlops:network:Network", "network"),
        _step("create", "aws:ec2/vpc:Vpc", "network-vpc", cidrBlock="10.0.0.0/16"),
        *[_step("create", "aws:ec2/subnet:Subnet", f"network-{kind}-{i}") for kind in ("public", "private") for i in range(2)],
        _step("create", "aws:ec2/eip:Eip", "network-nat-0"),
        _step("create", "aws:ec2/natGateway:NatGateway", "network-nat-0"),
        _step("create", "eks:index:Cluster", "cluster", version="1.31"),
        _step("create", "aws:eks/cluster:Cluster", "cluster-eksCluster", version="1.31"),
        # The pulumi_eks component and the aws:eks NodeGroup it creates: the estimate counts the nodes once.
        _step("create", "eks:index:ManagedNodeGroup", "cluster-general", **general),
        _step("create", "aws:eks/nodeGroup:NodeGroup", "cluster-general", **general),
        _step("create", "aws:s3/bucket:Bucket", "artifacts"),
        _step("create", "aws:iam/role:Role", "platform-irsa"),
        _step("create", "aws:cloudwatch/logGroup:LogGroup", "cluster-logs", retentionInDays=30),
    ]


class FakeWorkspace:
    """A StackWorkspace that records what the target asked of it."""

    def __init__(self, steps: list[ResourceStep] | None = None, outputs: dict[str, Any] | None = None) -> None:
        self.name = "dev"
        self.steps = preview_steps() if steps is None else steps
        self._outputs = dict(OUTPUTS if outputs is None else outputs)
        self.calls: list[str] = []
        self.exists = True

    def preview(self, on_step):
        self.calls.append("preview")
        for step in self.steps:
            on_step(step)
        return list(self.steps)

    def up(self, on_step):
        self.calls.append("up")
        for step in self.steps:
            step.status = "done"
            on_step(step)
        return dict(self._outputs)

    def destroy(self, on_step):
        self.calls.append("destroy")
        for step in self.steps:
            on_step(ResourceStep("delete", step.type, step.name, step.urn, status="done"))

    def outputs(self):
        self.calls.append("outputs")
        return dict(self._outputs)

    def last_update(self):
        return UpdateInfo(kind="update", result="succeeded", started="2026-11-26T22:00:00", ended="2026-11-26T22:14:00",
                          changes={"create": 52})

    def forget(self, component_type):
        self.calls.append(f"forget {component_type}")
        return [f"urn:pulumi:dev::test-project::{component_type}::artifacts"]


def pulumi_eks_kubeconfig(name: str) -> dict[str, Any]:
    """The shape of the kubeconfig pulumi-eks generates (nodejs/eks/cluster.ts generateKubeconfig)."""
    return {"apiVersion": "v1", "kind": "Config", "current-context": "aws",
            "clusters": [{"name": "kubernetes", "cluster": {"server": "https://EXAMPLE.gr7.us-east-1.eks.amazonaws.com",
                                                         "certificate-authority-data": "LS0tLS1CRUdJTi=="}}],
            "contexts": [{"name": "aws", "context": {"cluster": "kubernetes", "user": "aws"}}],
            "users": [{"name": "aws", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                                       "command": "aws", "args": ["eks", "get-token", "--cluster-name", name]}}}]}
