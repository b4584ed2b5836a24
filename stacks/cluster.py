"""The EKS cluster (aws.eks: the resources themselves) and its managed node groups, all nodes in private subnets.

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

from mlops_cli.adapters.eks_token import with_token_command

from .ecr import adopted

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
# EKS managed node group AMI types (CreateNodegroup amiType; EKS user guide "Amazon EKS optimized AMIs").
AMI_STANDARD = "AL2023_x86_64_STANDARD"
AMI_NVIDIA = "AL2023_x86_64_NVIDIA"
ROOT_DEVICE = "/dev/xvda"  # the AL2023 EKS AMI's root device name
ROOT_VOLUME_TYPE = "gp3"
POOL_LABEL = "mlops/pool"
CLUSTER_POLICY = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"
LOG_TYPES = ("api", "audit", "authenticator")
CNI_CONFIGURATION = json.dumps({"enableNetworkPolicy": "true"})
ADMIN_ACCESS_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


def log_group_name(cluster_name: str) -> str:
    return f"/aws/eks/{cluster_name}/cluster"

# What a managed node's kubelet needs: join the cluster, run the VPC CNI, pull images from ECR.
_NODE_POLICIES = {
    "worker": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "cni": "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    # Pull only: what the kubelet needs (EKS user guide, "Amazon EKS node IAM role", names
    # AmazonEC2ContainerRegistryPullOnly; ReadOnly also lists and describes every repository).
    "ecr": "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
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
    subnet_ids: pulumi.Input[list[str]] | None = None   # default: every private subnet


@dataclass(frozen=True)
class ClusterArgs:
    cluster_name: str
    version: str
    upgrade_policy: str        # STANDARD | EXTENDED (cloud/eks_versions.upgrade_policy decides)
    public_subnet_ids: list[pulumi.Input[str]]
    private_subnet_ids: list[pulumi.Input[str]]
    public_access_cidrs: list[str]
    node_groups: list[NodeGroupSpec]
    region: str = "us-east-1"
    log_retention_days: int = 30
    tags: dict[str, str] = field(default_factory=dict)
    adopt_log_group: bool = False   # /aws/eks/<name>/cluster exists (a returning user's): imported, not created
    admin_principals: list[str] = field(default_factory=list)   # IAM role/user ARNs made cluster admins


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
        # A returning user's account still has it (EKS made it for the earlier cluster): creating it again fails
        # with ResourceAlreadyExistsException, so it is imported; its retention becomes ours on the next `up`.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=log_group_name(args.cluster_name), retention_in_days=args.log_retention_days,
            tags=args.tags, opts=adopted(self, log_group_name(args.cluster_name) if args.adopt_log_group else None,
                                         ["retentionInDays", "tags", "kmsKeyId", "logGroupClass", "skipDestroy"]))
        if not args.public_access_cidrs:
            raise ValueError("public_access_cidrs is empty: `mlops up` resolves it to your egress address "
                             "before running the program; pass CIDRs explicitly when building it yourself")
        cluster_role = aws.iam.Role(
            f"{name}-cluster",
            assume_role_policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"},
                               "Action": ["sts:AssumeRole", "sts:TagSession"]}],
            }),
            tags=args.tags,
            opts=child,
        )
        cluster_policy = aws.iam.RolePolicyAttachment(f"{name}-cluster", role=cluster_role.name,
                                                      policy_arn=CLUSTER_POLICY, opts=child)
        # aws.eks.Cluster itself rather than pulumi-eks's Cluster: that one is a remote component (its insides
        # run in the eks provider plugin, out of reach of any offline test), and what matters here is exactly
        # what CreateCluster receives.
        self._cluster = aws.eks.Cluster(
            name,
            name=args.cluster_name,
            role_arn=cluster_role.arn,
            version=args.version,
            # Explicit: the API's default is EXTENDED, which silently bills $0.60/h once standard support ends.
            upgrade_policy={"support_type": args.upgrade_policy},
            vpc_config={
                # Both kinds of subnet: EKS places its ENIs in them, and load balancers find their subnets by tag.
                "subnet_ids": [*args.private_subnet_ids, *args.public_subnet_ids],
                "endpoint_private_access": True,
                "endpoint_public_access": True,
                "public_access_cidrs": args.public_access_cidrs,
            },
            # Access entries, not the aws-auth ConfigMap; the creator (the identity running `up`, which then
            # installs the platform) is cluster admin. EKS adds the managed node groups' role itself.
            access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": True},
            enabled_cluster_log_types=list(LOG_TYPES),
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group, cluster_policy]),
        )
        after_cluster = pulumi.ResourceOptions(parent=self, depends_on=[self._cluster])
        # Besides the creator: each [eks].admin_principals as an access entry with the cluster-admin access policy
        # (EKS user guide, "Grant IAM users access to Kubernetes with EKS access entries").
        for n, principal in enumerate(args.admin_principals):
            entry = aws.eks.AccessEntry(f"{name}-admin-{n}", cluster_name=self._cluster.name, principal_arn=principal,
                                        type="STANDARD", tags=args.tags, opts=after_cluster)
            aws.eks.AccessPolicyAssociation(f"{name}-admin-{n}", cluster_name=self._cluster.name,
                                            principal_arn=principal, policy_arn=ADMIN_ACCESS_POLICY,
                                            access_scope={"type": "cluster"},
                                            opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]))
        # The networking add-ons as EKS-managed add-ons (patched by EKS, versions shown in the console). The VPC
        # CNI enforces NetworkPolicies only when asked (EKS user guide, "Restrict Pod network traffic with Kubernetes
        # network policies": configuration value enableNetworkPolicy "true"); the platform's default-deny policies
        # are otherwise decoration.
        for addon, values in (("vpc-cni", CNI_CONFIGURATION), ("kube-proxy", None)):
            aws.eks.Addon(f"{name}-{addon}", cluster_name=self._cluster.name, addon_name=addon,
                          resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
                          configuration_values=values, tags=args.tags, opts=after_cluster)

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
                cluster_name=self._cluster.name,
                node_group_name_prefix=f"{args.cluster_name}-{spec.name}-",
                node_role_arn=node_role.arn,
                subnet_ids=spec.subnet_ids if spec.subnet_ids is not None else args.private_subnet_ids,
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
        # CoreDNS needs nodes to become ACTIVE: created after them, or its creation waits out its timeout.
        aws.eks.Addon(f"{name}-coredns", cluster_name=self._cluster.name, addon_name="coredns",
                      resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
                      tags=args.tags, opts=pulumi.ResourceOptions(parent=self, depends_on=self.node_groups))

        self.cluster_name = self._cluster.name
        self.log_group = log_group.name
        self.kubeconfig_json = pulumi.Output.all(self._cluster.endpoint, self._cluster.certificate_authority).apply(
            lambda v: json.dumps(kubeconfig(args.cluster_name, args.region, v[0], _ca_data(v[1]))))
        self.oidc_provider_url = self._cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        self.oidc_issuer = self.oidc_provider_url.apply(lambda url: url.removeprefix("https://"))
        self.register_outputs({"cluster_name": self.cluster_name})


def _ca_data(authority) -> str:
    return authority.get("data", "") if isinstance(authority, dict) else getattr(authority, "data", "") or ""


def kubeconfig(cluster_name: str, region: str, endpoint: str, ca_data: str) -> dict:
    """The cluster's kubeconfig; its user runs `mlops eks-token` for a token (no AWS CLI needed)."""
    base = {
        "apiVersion": "v1", "kind": "Config", "current-context": cluster_name, "preferences": {},
        "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "users": [{"name": cluster_name, "user": {}}],
    }
    # `mlops` from PATH, not this machine's absolute venv path: the kubeconfig lives in the stack's state and
    # is written out on other machines too (targets/eks.py points the local copy at the local `mlops`).
    return with_token_command(base, cluster_name, region, command="mlops")
