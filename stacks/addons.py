"""What a bare EKS cluster lacks for the platform: storage, node scaling, GPU scheduling.

- EBS CSI driver as the EKS add-on `aws-ebs-csi-driver`, with its own IRSA role (AWS managed policy
  AmazonEBSCSIDriverPolicy) trusted only by `kube-system:ebs-csi-controller-sa`. EKS ships no EBS driver
  and no default StorageClass for new clusters (EKS user guide, "Store Kubernetes volumes with Amazon EBS"),
  so without both every PVC of the platform stays Pending.
- A default StorageClass `gp3` (ebs.csi.aws.com, encrypted, WaitForFirstConsumer so a volume is made in
  the zone of the pod that mounts it). Its name is a stack output and goes to the platform install.
- Cluster Autoscaler (Helm chart kubernetes/autoscaler charts/cluster-autoscaler) with its own IRSA role,
  discovering the managed node groups by the tags EKS puts on their Auto Scaling groups
  (k8s.io/cluster-autoscaler/enabled, k8s.io/cluster-autoscaler/<cluster>). README, "Node scaling" says why
  this over Karpenter or EKS Auto Mode.
- With GPU nodes, the NVIDIA device plugin (Helm chart NVIDIA/k8s-device-plugin): the AL2023 NVIDIA AMI
  carries the driver and container toolkit, not the plugin that advertises `nvidia.com/gpu` to the scheduler.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from mlops_cli.cloud.eks_versions import autoscaler_chart

from .cluster import GPU_TAINT, POOL_LABEL
from .identity import irsa_role

STORAGE_CLASS = "gp3"
EBS_CSI_SERVICE_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
EBS_CSI_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
AUTOSCALER_SERVICE_ACCOUNT = ("kube-system", "cluster-autoscaler")
AUTOSCALER_REPO = ("https://kubernetes.github.io/autoscaler", "cluster-autoscaler")   # chart per version: eks_versions
DEVICE_PLUGIN_CHART = ("https://nvidia.github.io/k8s-device-plugin", "nvidia-device-plugin", "0.17.0")
# Requests of the add-on pods we install ourselves (the capacity check counts them; cloud/capacity.py).
AUTOSCALER_REQUESTS = {"cpu": "100m", "memory": "300Mi"}


def device_plugin_values() -> dict:
    """The plugin on our GPU pool, on every Kubernetes version we accept. The chart's default affinity asks for
    a node labelled by Node Feature Discovery (`feature.node.kubernetes.io/pci-10de.present`) or
    `nvidia.com/gpu.present` (NVIDIA/k8s-device-plugin v0.17.0 deployments/helm/nvidia-device-plugin/values.yaml);
    EKS runs no NFD and its NVIDIA AMI nodes carry the latter only from 1.35, so on 1.33/1.34 the DaemonSet
    would schedule nowhere. Helm replaces a list in a values map: this affinity is the whole of it."""
    return {
        "nodeSelector": {POOL_LABEL: "gpu"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": POOL_LABEL, "operator": "In", "values": ["gpu"]}]}]}}},
        "tolerations": [{"key": GPU_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}],
    }


def autoscaler_policy(cluster_name: str) -> str:
    """IAM permissions from cluster-autoscaler/cloudprovider/aws/README.md ("Full Cluster Autoscaler
    Features Policy"), the write actions limited to Auto Scaling groups tagged as this cluster's."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Discover", "Effect": "Allow", "Resource": "*", "Action": [
                "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
                "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
                "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements",
                "eks:DescribeNodegroup"]},
            {"Sid": "ScaleOwnGroups", "Effect": "Allow", "Resource": "*",
             "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
             "Condition": {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}}},
        ],
    })


@dataclass(frozen=True)
class AddonsArgs:
    cluster_name: str
    region: str
    kubernetes_version: str
    kubeconfig: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    gpu: bool
    node_groups: list = field(default_factory=list)   # the aws.eks.NodeGroup resources (add-ons wait for nodes)
    tags: dict[str, str] = field(default_factory=dict)


class ClusterAddons(pulumi.ComponentResource):
    storage_class: pulumi.Output[str]
    ebs_csi_role_arn: pulumi.Output[str]
    autoscaler_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: AddonsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:addons:ClusterAddons", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def irsa(role: str, namespace_sa: tuple[str, str]) -> aws.iam.Role:
            return irsa_role(f"{name}-{role}", args.oidc_provider_arn, args.oidc_issuer, *namespace_sa, args.tags, child)

        ebs_role = irsa("ebs-csi", EBS_CSI_SERVICE_ACCOUNT)
        ebs_attach = aws.iam.RolePolicyAttachment(f"{name}-ebs-csi", role=ebs_role.name, policy_arn=EBS_CSI_POLICY,
                                                  opts=child)
        after_nodes = pulumi.ResourceOptions(parent=self, depends_on=[ebs_attach, *args.node_groups])
        aws.eks.Addon(
            f"{name}-ebs-csi",
            cluster_name=args.cluster_name,
            addon_name="aws-ebs-csi-driver",
            service_account_role_arn=ebs_role.arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=args.tags,
            opts=after_nodes,
        )

        provider = k8s.Provider(f"{name}-k8s", kubeconfig=args.kubeconfig, enable_server_side_apply=True, opts=child)
        in_cluster = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(args.node_groups))
        k8s.storage.v1.StorageClass(
            f"{name}-{STORAGE_CLASS}",
            metadata={"name": STORAGE_CLASS,
                      "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            provisioner="ebs.csi.aws.com",
            # tagSpecification_N: tags the driver puts on every volume it creates (aws-ebs-csi-driver
            # docs/tagging.md, v1.6.0+): the cluster tag lets `mlops down` find volumes that outlive it.
            parameters={"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4",
                        "tagSpecification_1": f"kubernetes.io/cluster/{args.cluster_name}=owned"},
            volume_binding_mode="WaitForFirstConsumer",
            reclaim_policy="Delete",
            allow_volume_expansion=True,
            opts=in_cluster,
        )

        scaler_role = irsa("autoscaler", AUTOSCALER_SERVICE_ACCOUNT)
        aws.iam.RolePolicy(f"{name}-autoscaler", role=scaler_role.id, policy=autoscaler_policy(args.cluster_name),
                           opts=child)
        repo, chart = AUTOSCALER_REPO
        version, app_version = autoscaler_chart(args.kubernetes_version)
        ns, sa = AUTOSCALER_SERVICE_ACCOUNT
        k8s.helm.v3.Release(
            f"{name}-autoscaler",
            name="cluster-autoscaler",
            namespace=ns,
            chart=chart,
            version=version,
            repository_opts={"repo": repo},
            values={
                "cloudProvider": "aws",
                "awsRegion": args.region,
                "autoDiscovery": {"clusterName": args.cluster_name},
                # The autoscaler's minor version should match the cluster's (its README, "Releases").
                "image": {"tag": f"v{app_version}"},
                "rbac": {"serviceAccount": {"name": sa, "annotations": {"eks.amazonaws.com/role-arn": scaler_role.arn}}},
                "resources": {"requests": AUTOSCALER_REQUESTS, "limits": {"memory": AUTOSCALER_REQUESTS["memory"]}},
                "extraArgs": {"balance-similar-node-groups": True, "skip-nodes-with-system-pods": False,
                              "expander": "least-waste"},
            },
            opts=in_cluster,
        )

        if args.gpu:
            repo, chart, version = DEVICE_PLUGIN_CHART
            k8s.helm.v3.Release(
                f"{name}-nvidia-device-plugin",
                name="nvidia-device-plugin",
                namespace="kube-system",
                chart=chart,
                version=version,
                repository_opts={"repo": repo},
                values=device_plugin_values(),
                opts=in_cluster,
            )

        # EKS installs no metrics server, and without one the gateway's HorizontalPodAutoscaler never gets CPU
        # figures and never scales (EKS user guide, "View resource usage with the Kubernetes Metrics Server");
        # the community add-on `metrics-server` (EKS user guide, "Community add-ons") is managed like the others.
        aws.eks.Addon(f"{name}-metrics-server", cluster_name=args.cluster_name, addon_name="metrics-server",
                      resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
                      tags=args.tags, opts=after_nodes)

        self.storage_class = pulumi.Output.from_input(STORAGE_CLASS)
        self.ebs_csi_role_arn = ebs_role.arn
        self.autoscaler_role_arn = scaler_role.arn
        self.register_outputs({"storage_class": self.storage_class})
