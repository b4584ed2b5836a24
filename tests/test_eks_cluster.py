"""Issue 11, points 2-8 as the Pulumi program declares them (under pulumi mocks, tests/pulumi_mocks.py).

What the program must hand AWS so that a new account gets a cluster that can run the platform: zones EKS
accepts that offer the instance types, storage that binds, nodes that scale, an endpoint the install can
reach, GPU nodes with drivers, a kubeconfig that needs no AWS CLI, a log group that expires.
"""

from __future__ import annotations

import json

import pytest

from tests.pulumi_mocks import EGRESS, OFFERINGS, ZONES, declare, irsa_trust

pulumi = pytest.importorskip("pulumi")


@pytest.fixture(scope="module")
def default():
    return declare()


# ------------------------------------------------------------------------------------- point 2: zones


def _subnet_zones(d, kind: str) -> list[str]:
    return [r.inputs["availabilityZone"] for r in d.of("aws:ec2/subnet:Subnet") if f"-{kind}-" in r.name]


def test_zones_exclude_eks_unsupported_ids_and_offer_the_instance_types(default):
    [azs] = [c for c in default.calls if c.token == "aws:index/getAvailabilityZones:getAvailabilityZones"]
    assert "use1-az3" in azs.args["excludeZoneIds"]
    assert {"name": "opt-in-status", "values": ["opt-in-not-required"]} in azs.args["filters"]
    by_name = ZONES
    for kind in ("public", "private"):
        zone_ids = [by_name[z] for z in _subnet_zones(default, kind)]
        assert "use1-az3" not in zone_ids
        assert all(z in OFFERINGS["m6i.large"] for z in zone_ids), zone_ids
    assert default.outputs["zone_ids"] == [by_name[z] for z in _subnet_zones(default, "private")]


def test_zones_follow_the_instance_type_offerings():
    d = declare(instance_types=["g5.xlarge"], availability_zones=3)
    assert sorted(ZONES[z] for z in _subnet_zones(d, "private")) == sorted(OFFERINGS["g5.xlarge"])


def test_too_few_usable_zones_is_a_clear_error():
    # The function the program applies to the zone and offering lookups (called directly: a failing
    # program under mocks leaves Pulumi's log of the failure on stderr after the test run).
    from stacks.network import ZoneShortage, usable_zones

    offered = {t: set(z) for t, z in OFFERINGS.items()}
    with pytest.raises(ZoneShortage, match=r"only 3 availability zone\(s\).*offer g5.xlarge"):
        usable_zones(list(ZONES), list(ZONES.values()), offered, ["g5.xlarge"], 4)
    assert [z for _, z in usable_zones(list(ZONES), list(ZONES.values()), offered, ["t3.medium"], 2)] == \
        ["use1-az1", "use1-az2"]  # t3.medium is offered in use1-az3, but EKS refuses that zone


# ----------------------------------------------------------------------------------- point 3: storage


def test_ebs_csi_addon_with_its_own_irsa_role(default):
    addon = default.one("aws:eks/addon:Addon", "ebs-csi").inputs
    assert addon["addonName"] == "aws-ebs-csi-driver" and addon["clusterName"] == "mlops"
    role = default.one("aws:iam/role:Role", "addons-ebs-csi")
    assert addon["serviceAccountRoleArn"] == f"arn:aws:mock:::{role.name}"
    assert json.loads(role.inputs["assumeRolePolicy"]) == irsa_trust("kube-system", "ebs-csi-controller-sa")
    attachment = default.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "addons-ebs-csi").inputs
    assert attachment["policyArn"].endswith("/AmazonEBSCSIDriverPolicy")


def test_default_storage_class_is_encrypted_gp3_on_the_csi_driver(default):
    sc = default.one("kubernetes:storage.k8s.io/v1:StorageClass").inputs
    assert sc["provisioner"] == "ebs.csi.aws.com"
    assert sc["parameters"]["type"] == "gp3" and sc["parameters"]["encrypted"] == "true"
    # Volumes carry the cluster tag, so the sweep after `down` finds any that outlived the cluster.
    assert sc["parameters"]["tagSpecification_1"] == "kubernetes.io/cluster/mlops=owned"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert default.outputs["storage_class"] == sc["metadata"]["name"]


# --------------------------------------------------------------------------- point 4: scaling mechanism


def test_cluster_autoscaler_with_its_own_role_discovers_the_node_groups(default):
    release = default.one("kubernetes:helm.sh/v3:Release", "autoscaler").inputs
    assert release["chart"] == "cluster-autoscaler" and release["version"]
    assert release["repositoryOpts"]["repo"] == "https://kubernetes.github.io/autoscaler"
    values = release["values"]
    assert values["autoDiscovery"]["clusterName"] == "mlops" and values["awsRegion"] == "us-east-1"
    role = default.one("aws:iam/role:Role", "addons-autoscaler")
    sa = values["rbac"]["serviceAccount"]
    assert sa["annotations"]["eks.amazonaws.com/role-arn"] == f"arn:aws:mock:::{role.name}"
    assert json.loads(role.inputs["assumeRolePolicy"]) == irsa_trust("kube-system", sa["name"])
    policy = json.loads(default.one("aws:iam/rolePolicy:RolePolicy", "addons-autoscaler").inputs["policy"])
    write = next(s for s in policy["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"])
    assert write["Condition"] == {"StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/mlops": "owned"}}
    group = default.one("aws:eks/nodeGroup:NodeGroup", "general")
    assert group.inputs["scalingConfig"]["maxSize"] > group.inputs["scalingConfig"]["desiredSize"]


# ------------------------------------------------------------------------------- point 5: endpoint


def test_endpoint_public_for_the_configured_cidrs_and_private(default):
    vpc = default.one("aws:eks/cluster:Cluster").inputs["vpcConfig"]
    assert vpc["endpointPublicAccess"] is True and vpc["endpointPrivateAccess"] is True
    assert vpc["publicAccessCidrs"] == EGRESS


# ------------------------------------------------------------------------------------- point 6: GPU


def test_nodes_run_al2023_and_gpu_nodes_the_nvidia_ami_with_the_device_plugin(default):
    assert default.one("aws:eks/nodeGroup:NodeGroup", "general").inputs["amiType"] == "AL2023_x86_64_STANDARD"
    assert not default.of("kubernetes:helm.sh/v3:Release") or all(
        "nvidia" not in r.name for r in default.of("kubernetes:helm.sh/v3:Release"))
    d = declare(gpu=True, gpu_instance_types=["g5.xlarge"])
    gpu = d.one("aws:eks/nodeGroup:NodeGroup", "gpu").inputs
    assert gpu["amiType"] == "AL2023_x86_64_NVIDIA"
    plugin = d.one("kubernetes:helm.sh/v3:Release", "nvidia").inputs
    assert plugin["chart"] == "nvidia-device-plugin"
    assert plugin["values"]["nodeSelector"] == {"mlops/pool": "gpu"}
    assert plugin["values"]["tolerations"][0]["key"] == "nvidia.com/gpu"


# --------------------------------------------------------------------------- root volumes (cost, point 3)


def test_root_volumes_are_encrypted_gp3_from_our_launch_template(default):
    group = default.one("aws:eks/nodeGroup:NodeGroup", "general").inputs
    template = default.one("aws:ec2/launchTemplate:LaunchTemplate", "general")
    assert group["launchTemplate"]["id"] == f"{template.name}-id"
    assert "diskSize" not in group  # EKS refuses diskSize together with a launch template
    [mapping] = template.inputs["blockDeviceMappings"]
    assert mapping["ebs"] == {"volumeSize": 50, "volumeType": "gp3", "encrypted": "true", "deleteOnTermination": "true"}
    assert template.inputs["metadataOptions"]["httpTokens"] == "required"


# ----------------------------------------------------------------------------- point 7: kubeconfig


def test_kubeconfig_asks_mlops_for_the_token_not_the_aws_cli(default):
    kubeconfig = json.loads(default.outputs["kubeconfig"])
    [user] = kubeconfig["users"]
    exec_ = user["user"]["exec"]
    assert exec_["command"].endswith("mlops") and exec_["command"] != "aws"
    assert exec_["args"] == ["eks-token", "--cluster", "mlops", "--region", "us-east-1"]
    assert exec_["apiVersion"] == "client.authentication.k8s.io/v1beta1"


# --------------------------------------------------------------------------- point 8: the log group


def test_control_plane_log_group_is_declared_with_retention():
    d = declare(log_retention_days=14)
    group = d.one("aws:cloudwatch/logGroup:LogGroup")
    # The name EKS writes to: declared by us, EKS uses it instead of creating a never-expiring one.
    assert group.inputs["name"] == "/aws/eks/mlops/cluster" and group.inputs["retentionInDays"] == 14
    assert d.outputs["log_group"] == "/aws/eks/mlops/cluster"


def test_log_retention_must_be_a_value_cloudwatch_accepts():
    from pydantic import ValidationError

    from mlops_cli.config.cluster_sections import EksConfig

    with pytest.raises(ValidationError, match="CloudWatch Logs accepts only"):
        EksConfig(log_retention_days=10)


# ------------------------------------------------------------------------- issue 23 point 2: what runs


def test_the_autoscaler_chart_matches_each_accepted_kubernetes_minor():
    # Chart 9.38.0 (appVersion 1.31) on 1.35 lacked the resource.k8s.io RBAC the 1.35 image needs: it never ran.
    from mlops_cli.cloud.eks_versions import AUTOSCALER_CHARTS, VERSIONS, Support, status
    from tests.aws_api import REFERENCE_DATE

    accepted = [v.version for v in VERSIONS
                if status(v.version, REFERENCE_DATE).support in (Support.STANDARD, Support.EXTENDED)]
    for version in accepted:
        chart, app = AUTOSCALER_CHARTS[version]
        assert app.split(".")[:2] == version.split("."), (version, chart, app)   # the chart's appVersion minor
        release = declare(version=version).one("kubernetes:helm.sh/v3:Release", "autoscaler").inputs
        assert release["version"] == chart and release["values"]["image"]["tag"] == f"v{app}", version
    assert tuple(map(int, AUTOSCALER_CHARTS["1.35"][0].split("."))) >= (9, 54, 0)   # first chart with that RBAC


def test_metrics_server_add_on_is_installed_and_counted(default):
    from mlops_cli.cloud.capacity import SYSTEM_PER_CLUSTER

    addons = {r.inputs["addonName"]: r.inputs for r in default.of("aws:eks/addon:Addon")}
    assert "metrics-server" in addons   # EKS installs none; without it the gateway's HPA never scales
    assert SYSTEM_PER_CLUSTER["metrics-server"] == (1, 100, 200)


def test_the_vpc_cni_enforces_network_policies(default):
    cni = next(r.inputs for r in default.of("aws:eks/addon:Addon") if r.inputs["addonName"] == "vpc-cni")
    assert json.loads(cni["configurationValues"]) == {"enableNetworkPolicy": "true"}



# ------------------------------------------------------------------------------- issue 23 point 6 and 9


def test_the_kubeconfig_in_the_state_runs_mlops_from_path(default):
    # An absolute path to one machine's venv would be stored in the Pulumi state and break everywhere else.
    [user] = json.loads(default.outputs["kubeconfig"])["users"]
    assert user["user"]["exec"]["command"] == "mlops"


def test_admin_principals_become_access_entries_with_the_admin_policy():
    arn = "arn:aws:iam::123456789012:role/platform-team"
    d = declare(admin_principals=[arn])
    entry = d.one("aws:eks/accessEntry:AccessEntry").inputs
    assert entry["principalArn"] == arn and entry["type"] == "STANDARD"
    policy = d.one("aws:eks/accessPolicyAssociation:AccessPolicyAssociation").inputs
    assert policy["policyArn"].endswith("/AmazonEKSClusterAdminPolicy") and policy["accessScope"] == {"type": "cluster"}
    from pydantic import ValidationError

    from mlops_cli.config.cluster_sections import EksConfig

    with pytest.raises(ValidationError, match="not an IAM role or user ARN"):
        EksConfig(admin_principals=["platform-team"])


def test_nodes_pull_images_with_the_pull_only_policy(default):
    arns = {r.inputs["policyArn"] for r in default.of("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            if "cluster-node" in r.name}
    assert "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly" in arns
    assert not any(a.endswith("ReadOnly") for a in arns)


def test_s3_goes_through_a_gateway_endpoint_on_the_private_route_tables(default):
    endpoint = default.one("aws:ec2/vpcEndpoint:VpcEndpoint").inputs
    assert endpoint["serviceName"] == "com.amazonaws.us-east-1.s3" and endpoint["vpcEndpointType"] == "Gateway"
    private = {f"{r.name}-id" for r in default.of("aws:ec2/routeTable:RouteTable") if "private" in r.name}
    assert set(endpoint["routeTableIds"]) == private
