"""The inline program: the components wired together from `[eks]`, and the stack's outputs.

- `network.Network`: VPC across N availability zones, public + private subnets, NAT.
- `cluster.Cluster`: EKS (aws.eks resources directly) with managed node groups in the private subnets.
- `addons.ClusterAddons`: EBS CSI driver, default gp3 StorageClass, Cluster Autoscaler, NVIDIA device plugin.
- `identity.PlatformIdentity`: the cluster's OIDC provider and the platform's IRSA role.
- `storage.ArtifactBucket`: the S3 bucket for MLflow artifacts and the DVC remote.
- `ecr.ImageRepositories`: optional ECR repositories for our images.

`mlops up --target eks` hands `inline(config)` to the Automation API; tests call `build` under
`pulumi.runtime.set_mocks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pulumi

from mlops_cli.adapters.aws_existing import Existing
from mlops_cli.cloud.eks_records import kept_bucket
from mlops_cli.cloud.eks_versions import upgrade_policy
from mlops_cli.config.cluster_sections import EksConfig
from mlops_cli.config.settings import Config

from charts.inference_service import PREDICTOR_SERVICE_ACCOUNT
from charts.objects import requests_gpu

from .addons import AddonsArgs, ClusterAddons
from .cluster import Cluster, ClusterArgs, NodeGroupSpec
from .ecr import ImageRepositories, RepositoriesArgs, namespace
from .identity import IdentityArgs, PlatformIdentity
from .network import Network, NetworkArgs
from .storage import ArtifactBucket, BucketArgs, bucket_prefix
from .tags import stack_tags

OUTPUTS = ("cluster_name", "region", "kubeconfig", "bucket_name", "irsa_role_arn", "predictor_role_arn", "ecr_urls",
           "images_registry",
           "vpc_id", "zone_ids", "storage_class", "log_group")


@dataclass(frozen=True)
class Platform:
    """Where the platform install needs to look: whose service account, in which namespace."""

    project: str
    namespace: str
    adopt_bucket: str = ""   # the bucket a previous `down` kept (cloud/eks_records.py kept_bucket)
    gpu: bool = False        # something the platform renders requests nvidia.com/gpu ([serving].device = "cuda")
    adopt_repositories: tuple[str, ...] = ()   # ECR repositories that exist outside the stack (pushed to first)
    adopt_log_group: bool = False              # the control-plane log group exists outside the stack


def node_groups(eks: EksConfig, gpu_subnet_ids: pulumi.Input[list[str]] | None = None) -> list[NodeGroupSpec]:
    """The general group, and the GPU group when something requests a GPU (it is ~$734/month of g5.xlarge
    otherwise used by nothing): `gpu_subnet_ids` are the subnets of the zones that offer its instance type."""
    groups = [NodeGroupSpec("general", eks.instance_types, eks.min_size, eks.desired_size, eks.max_size,
                            eks.disk_size_gb)]
    if gpu_subnet_ids is not None:
        groups.append(NodeGroupSpec("gpu", eks.gpu_instance_types, eks.gpu_min_size, eks.gpu_desired_size,
                                    eks.gpu_max_size, eks.disk_size_gb, gpu=True, subnet_ids=gpu_subnet_ids))
    return groups


def build(eks: EksConfig, platform: Platform) -> dict[str, pulumi.Output]:
    stack = pulumi.get_stack()
    tags = stack_tags(platform.project, stack)

    network = Network("network", NetworkArgs(cidr=eks.vpc_cidr, region=eks.region, az_count=eks.availability_zones,
                                             single_nat=eks.single_nat_gateway, cluster_name=eks.cluster_name,
                                             tags=tags, instance_types=eks.instance_types,
                                             gpu_instance_types=eks.gpu_instance_types if platform.gpu else []))
    cluster = Cluster("cluster", ClusterArgs(
        cluster_name=eks.cluster_name, version=eks.version,
        upgrade_policy=upgrade_policy(eks.version, eks.upgrade_policy),
        public_subnet_ids=network.public_subnet_ids, private_subnet_ids=network.private_subnet_ids,
        public_access_cidrs=eks.public_access_cidrs, node_groups=node_groups(eks, network.gpu_subnet_ids),
        region=eks.region,
        log_retention_days=eks.log_retention_days, tags=tags, adopt_log_group=platform.adopt_log_group,
        admin_principals=list(eks.admin_principals)))
    bucket = ArtifactBucket("artifacts", BucketArgs(
        bucket_name=eks.bucket_name, name_prefix=bucket_prefix(platform.project, stack),
        noncurrent_days=eks.noncurrent_version_days, tags=tags, adopt=platform.adopt_bucket))
    identity = PlatformIdentity("platform", IdentityArgs(
        oidc_provider_url=cluster.oidc_provider_url, oidc_issuer=cluster.oidc_issuer,
        namespace=platform.namespace, service_account=eks.service_account, bucket_arn=bucket.bucket_arn, tags=tags,
        predictor_service_account=PREDICTOR_SERVICE_ACCOUNT))
    addons = ClusterAddons("addons", AddonsArgs(
        cluster_name=eks.cluster_name, region=eks.region, kubernetes_version=eks.version,
        kubeconfig=cluster.kubeconfig_json, oidc_provider_arn=identity.oidc_provider_arn,
        oidc_issuer=cluster.oidc_issuer, gpu=platform.gpu, node_groups=cluster.node_groups, tags=tags))
    ecr_urls: dict[str, pulumi.Output[str]] = {}
    registry: pulumi.Output[str] = pulumi.Output.from_input("")
    if eks.ecr_enabled:
        repos = ImageRepositories("images", RepositoriesArgs(project=platform.project, tags=tags,
                                                             adopt=platform.adopt_repositories))
        ecr_urls = repos.urls
        # <account>.dkr.ecr.<region>.amazonaws.com/<namespace>: the `[images] registry` of the install.
        registry = next(iter(ecr_urls.values())).apply(
            lambda url: f"{url.split('/', 1)[0]}/{namespace(platform.project)}")

    outputs = {
        "cluster_name": cluster.cluster_name,
        "region": pulumi.Output.from_input(eks.region),
        # The kubeconfig holds the cluster's CA and endpoint: kept encrypted in the state.
        "kubeconfig": pulumi.Output.secret(cluster.kubeconfig_json),
        "bucket_name": bucket.bucket_name,
        "irsa_role_arn": identity.role_arn,
        "predictor_role_arn": identity.predictor_role_arn,
        "ecr_urls": pulumi.Output.from_input(ecr_urls),
        "images_registry": registry,
        "vpc_id": network.vpc_id,
        "zone_ids": network.zone_ids,
        "storage_class": addons.storage_class,
        "log_group": cluster.log_group,
    }
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs


def inline(config: Config, existing: Existing | None = None) -> Callable[[], None]:
    """The program as the Automation API wants it: a no-argument function. `existing`: what the account holds
    already outside the stack (adapters/aws_existing.py), adopted instead of created."""
    eks = config.eks
    existing = existing or Existing()
    platform = Platform(project=config.project.name, namespace=config.kubernetes.namespace,
                        adopt_bucket=kept_bucket(config), gpu=requests_gpu(config),
                        adopt_repositories=existing.repositories, adopt_log_group=bool(existing.log_group))

    def program() -> None:
        build(eks, platform)

    return program
