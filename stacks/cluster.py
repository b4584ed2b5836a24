"""The EKS cluster (pulumi_eks) and its managed node groups, all nodes in private subnets.

The API endpoint is reachable privately from inside the VPC, and publicly only from the configured
CIDRs (none = private only). An optional GPU group carries a NoSchedule taint so that only pods that
tolerate it (the predictor, when asked) land on the expensive nodes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}

# What a managed node's kubelet needs: join the cluster, run the VPC CNI, pull images from ECR.
_NODE_POLICIES = {
    "worker": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "cni": "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "ecr": "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
}


@dataclass(frozen=True)
class NodeGroupSpec:
    name: str
    instance_types: list[str]
    min_size: int
    desired_size: int
    max_size: int
    disk_size_gb: int
    gpu: bool = False


@dataclass(frozen=True)
class ClusterArgs:
    cluster_name: str
    version: str
    upgrade_policy: str        # STANDARD | EXTENDED (core/eks_versions.upgrade_policy decides)
    vpc_id: pulumi.Input[str]
    public_subnet_ids: list[pulumi.Input[str]]
    private_subnet_ids: list[pulumi.Input[str]]
    public_access_cidrs: list[str]
    node_groups: list[NodeGroupSpec]
    tags: dict[str, str] = field(default_factory=dict)


class Cluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    kubeconfig_json: pulumi.Output[str]
    oidc_provider_url: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:cluster:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        node_role = aws.iam.Role(
            f"{name}-node",
            assume_role_policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                               "Action": "sts:AssumeRole"}],
            }),
            tags=args.tags,
            opts=child,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-node-{key}", role=node_role.name, policy_arn=arn, opts=child)
            for key, arn in _NODE_POLICIES.items()
        ]

        public = bool(args.public_access_cidrs)
        self._cluster = eks.Cluster(
            name,
            name=args.cluster_name,
            version=args.version,
            # Explicit: the API's default is EXTENDED, which silently bills $0.60/h once standard support ends.
            upgrade_policy={"support_type": args.upgrade_policy},
            vpc_id=args.vpc_id,
            public_subnet_ids=args.public_subnet_ids,
            private_subnet_ids=args.private_subnet_ids,
            node_associate_public_ip_address=False,
            endpoint_private_access=True,
            endpoint_public_access=public,
            public_access_cidrs=args.public_access_cidrs if public else None,
            # Node groups are declared below (managed, sized from config); the default one is not.
            skip_default_node_group=True,
            # Access entries instead of the aws-auth ConfigMap; EKS maps managed node roles itself.
            authentication_mode=eks.AuthenticationMode.API,
            # identity.PlatformIdentity declares the OIDC provider next to the role that trusts it.
            create_oidc_provider=False,
            enabled_cluster_log_types=["api", "audit", "authenticator"],
            tags=args.tags,
            opts=child,
        )

        for spec in args.node_groups:
            eks.ManagedNodeGroup(
                f"{name}-{spec.name}",
                cluster=self._cluster,
                node_role=node_role,
                subnet_ids=args.private_subnet_ids,
                instance_types=spec.instance_types,
                scaling_config={"min_size": spec.min_size, "desired_size": spec.desired_size, "max_size": spec.max_size},
                disk_size=spec.disk_size_gb,
                gpu=spec.gpu or None,
                taints=[GPU_TAINT] if spec.gpu else None,
                labels={"mlops/pool": spec.name},
                tags=args.tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=attachments),
            )

        self.cluster_name = pulumi.Output.from_input(args.cluster_name)
        self.kubeconfig_json = self._cluster.kubeconfig_json
        self.oidc_provider_url = self._cluster.oidc_provider_url
        self.oidc_issuer = self._cluster.oidc_issuer
        self.register_outputs({"cluster_name": self.cluster_name})
