"""The EKS cluster (pulumi_eks) and its managed node groups, all nodes in private subnets.

The API endpoint is private inside the VPC and public only from the configured CIDRs (the install runs
from the user's machine, so a public endpoint is required; `up` fills in the user's egress address when
none are configured). Nodes run the EKS-optimized Amazon Linux 2023 AMI (AL2 AMIs stop at Kubernetes 1.32),
the NVIDIA variant for the GPU group, on encrypted gp3 root volumes from our own launch template, so the
volume type and size are what we declare, not a default. An optional GPU group carries a NoSchedule taint
so that only pods that tolerate it (the predictor, when asked) land on the expensive nodes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks

from mlops_cli.adapters.eks_token import with_token_command

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
# EKS managed node group AMI types (CreateNodegroup amiType; EKS user guide "Amazon EKS optimized AMIs").
AMI_STANDARD = "AL2023_x86_64_STANDARD"
AMI_NVIDIA = "AL2023_x86_64_NVIDIA"
ROOT_DEVICE = "/dev/xvda"  # the AL2023 EKS AMI's root device name
ROOT_VOLUME_TYPE = "gp3"
POOL_LABEL = "mlops/pool"
LOG_TYPES = ("api", "audit", "authenticator")


def log_group_name(cluster_name: str) -> str:
    return f"/aws/eks/{cluster_name}/cluster"

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
    region: str = "us-east-1"
    log_retention_days: int = 30
    tags: dict[str, str] = field(default_factory=dict)


class Cluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    kubeconfig_json: pulumi.Output[str]
    log_group: pulumi.Output[str]
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

        # EKS writes control-plane logs to this fixed name and creates the group itself, never expiring and
        # outliving the cluster, unless it exists already (EKS user guide, "Send control plane logs to
        # CloudWatch Logs"). Declared first, it has a retention and goes away with the stack.
        log_group = aws.cloudwatch.LogGroup(f"{name}-logs", name=log_group_name(args.cluster_name),
                                            retention_in_days=args.log_retention_days, tags=args.tags, opts=child)
        if not args.public_access_cidrs:
            raise ValueError("public_access_cidrs is empty: `mlops up` resolves it to your egress address "
                             "before running the program; pass CIDRs explicitly when building it yourself")
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
            endpoint_public_access=True,
            public_access_cidrs=args.public_access_cidrs,
            # Node groups are declared below (managed, sized from config); the default one is not.
            skip_default_node_group=True,
            # Access entries instead of the aws-auth ConfigMap; EKS maps managed node roles itself.
            authentication_mode=eks.AuthenticationMode.API,
            # identity.PlatformIdentity declares the OIDC provider next to the role that trusts it.
            create_oidc_provider=False,
            enabled_cluster_log_types=list(LOG_TYPES),
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group]),
        )

        self.node_groups = []
        for spec in args.node_groups:
            template = aws.ec2.LaunchTemplate(
                f"{name}-{spec.name}",
                block_device_mappings=[{"device_name": ROOT_DEVICE, "ebs": {
                    "volume_size": spec.disk_size_gb, "volume_type": ROOT_VOLUME_TYPE, "encrypted": "true",
                    "delete_on_termination": "true"}}],
                # IMDSv2 only; hop limit 2 so that pods (one hop further) can still reach it where they must.
                metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 2},
                tag_specifications=[{"resource_type": kind, "tags": args.tags} for kind in ("instance", "volume")],
                tags=args.tags,
                opts=child,
            )
            # The AWS resource itself, not pulumi-eks's ManagedNodeGroup: that one is a remote component whose
            # insides run in its provider plugin, so no test here could see what it sends AWS. This way the
            # program's tests see the exact CreateNodegroup inputs.
            self.node_groups.append(aws.eks.NodeGroup(
                f"{name}-{spec.name}",
                cluster_name=args.cluster_name,
                node_group_name_prefix=f"{args.cluster_name}-{spec.name}-",
                node_role_arn=node_role.arn,
                subnet_ids=args.private_subnet_ids,
                instance_types=spec.instance_types,
                ami_type=AMI_NVIDIA if spec.gpu else AMI_STANDARD,
                capacity_type="ON_DEMAND",
                scaling_config={"min_size": spec.min_size, "desired_size": spec.desired_size, "max_size": spec.max_size},
                update_config={"max_unavailable": 1},
                launch_template={"id": template.id, "version": template.latest_version.apply(str)},
                taints=[GPU_TAINT] if spec.gpu else None,
                labels={POOL_LABEL: spec.name},
                tags=args.tags,
                # The cluster autoscaler changes the desired size; Pulumi must not reset it on the next `up`.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*attachments, self._cluster],
                                            ignore_changes=["scalingConfig.desiredSize"]),
            ))

        self.cluster_name = pulumi.Output.from_input(args.cluster_name)
        self.log_group = log_group.name
        # pulumi-eks's kubeconfig runs `aws eks get-token`; ours asks `mlops eks-token` (no AWS CLI needed).
        self.kubeconfig_json = self._cluster.kubeconfig_json.apply(
            lambda k: json.dumps(with_token_command(k, args.cluster_name, args.region)))
        self.oidc_provider_url = self._cluster.oidc_provider_url
        self.oidc_issuer = self._cluster.oidc_issuer
        self.register_outputs({"cluster_name": self.cluster_name})
