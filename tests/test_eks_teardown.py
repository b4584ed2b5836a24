"""Issue 11 point 8 and acceptance 3: `mlops down --target eks` against the Kubernetes API emulator plus moto.

The cluster (tests/k8s_support.py's emulator) holds LoadBalancer Services and PVCs; AWS (a moto server on
loopback: real ELB/EC2 protocol) holds their load balancers and volumes, plus leftovers of earlier days
tagged as the cluster's. A stand-in cloud controller releases a Service's load balancer and a PVC's volume a
little after Kubernetes deleted them, as AWS does: `down` must wait for that before destroying, then sweep
what is still tagged kubernetes.io/cluster/<name> and report each removal.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from mlops_cli.adapters import aws_sweep, pulumi_workspace
from tests.k8s_support import EmulatorThread, write_kubeconfig
from tests.eks_support import OUTPUTS, FakeWorkspace

CLUSTER = "mlops"
TAG = f"kubernetes.io/cluster/{CLUSTER}"
RELEASE_DELAY_S = 1.0


@pytest.fixture
def moto_env(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # botocore sends every service there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    httpx.post(f"{s3_endpoint}/moto-api/reset", timeout=10)
    return aws_sweep.Aws("us-east-1")


def _tags(**tags: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _elb(client, name: str, subnet: str, **tags: str) -> None:
    client.elb.create_load_balancer(LoadBalancerName=name, Subnets=[subnet],
                                    Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80, "InstancePort": 30080}])
    client.elb.add_tags(LoadBalancerNames=[name], Tags=_tags(**tags))


def _group(client, vpc: str, name: str, **tags: str) -> str:
    return client.ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc, TagSpecifications=[
        {"ResourceType": "security-group", "Tags": _tags(**tags)}])["GroupId"]


def _volume(client, **tags: str) -> str:
    return client.ec2.create_volume(AvailabilityZone="us-east-1a", Size=10, VolumeType="gp3",
                                    TagSpecifications=[{"ResourceType": "volume", "Tags": _tags(**tags)}])["VolumeId"]


class CloudController(threading.Thread):
    """Deletes a Service's load balancer / a PVC's volume RELEASE_DELAY_S after Kubernetes lost the object."""

    def __init__(self, emu, client, lbs: dict[str, str], volumes: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.emu, self.client, self.lbs, self.volumes = emu, client, dict(lbs), dict(volumes)
        self.stop = threading.Event()

    def run(self) -> None:
        gone_since: dict[str, float] = {}
        while not self.stop.is_set() and (self.lbs or self.volumes):
            with self.emu.server.lock:
                present = {f"{k[2]}/{k[3]}" for k in self.emu.server.store if k[1] in ("services", "persistentvolumeclaims")}
            for key in [*self.lbs, *self.volumes]:
                if key not in present:
                    gone_since.setdefault(key, time.monotonic())
                    if time.monotonic() - gone_since[key] >= RELEASE_DELAY_S:
                        if key in self.lbs:
                            self.client.elb.delete_load_balancer(LoadBalancerName=self.lbs.pop(key))
                        else:
                            self.client.ec2.delete_volume(VolumeId=self.volumes.pop(key))
            time.sleep(0.1)


@pytest.fixture
def world(project, tmp_path, aws, moto_env, monkeypatch):
    client = moto_env
    vpc = client.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = client.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/20", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    # What the platform's Services and PVCs hold in AWS.
    lbs = {"ingress-nginx/ingress-nginx-controller": "a1ingress", "kourier-system/kourier": "a2kourier"}
    for service, name in lbs.items():
        _elb(client, name, subnet, **{TAG: "owned", aws_sweep.SERVICE_TAG: service})
    volumes = {claim: _volume(client, **{aws_sweep.PVC_NAMESPACE_TAG: claim.split("/")[0],
                                         aws_sweep.PVC_NAME_TAG: claim.split("/")[1]})
               for claim in ("mlops/mlflow-data", "mlops/loki-data")}
    # Leftovers of earlier days, and what must survive: another cluster's load balancer, one of a cluster with
    # the same name in another VPC, EKS's own cluster security group (it carries the cluster tag too, with a
    # rule), a group merely `shared` with the cluster, a volume nobody claimed and one a PV retains.
    _elb(client, "leakedelb", subnet, **{TAG: "owned", aws_sweep.SERVICE_TAG: "old/gone"})
    _elb(client, "otherclusterelb", subnet, **{"kubernetes.io/cluster/other": "owned"})
    other_vpc = client.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    other_subnet = client.ec2.create_subnet(VpcId=other_vpc, CidrBlock="10.9.0.0/20",
                                            AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    _elb(client, "othervpcelb", other_subnet, **{TAG: "owned"})
    sg = _group(client, vpc, "k8s-elb-leaked", **{TAG: "owned"})
    eks_sg = _group(client, vpc, "eks-cluster-sg-mlops-1", **{TAG: "owned", aws_sweep.EKS_CLUSTER_SG_TAG: CLUSTER})
    client.ec2.authorize_security_group_ingress(GroupId=eks_sg, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": eks_sg}]}])
    shared_sg = _group(client, vpc, "shared-with-cluster", **{TAG: "shared"})
    leaked_volume = _volume(client, **{TAG: "owned"})
    retained_volume = _volume(client, **{TAG: "owned", aws_sweep.PVC_NAMESPACE_TAG: "mlops",
                                         aws_sweep.PVC_NAME_TAG: "kept-data"})

    emu = EmulatorThread().__enter__()
    server = emu.server
    for ns in ("ingress-nginx", "kourier-system", "mlops"):
        server.put(("v1", "namespaces", "", ns), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for ns, name in (("ingress-nginx", "ingress-nginx-controller"), ("kourier-system", "kourier")):
        server.put(("v1", "services", ns, name),
                   {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
    server.put(("v1", "services", "mlops", "gateway-internal"),
               {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gateway-internal", "namespace": "mlops"},
                "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}})
    server.put(("v1", "persistentvolumes", "", "pv-kept"),
               {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-kept"},
                "spec": {"persistentVolumeReclaimPolicy": "Retain", "capacity": {"storage": "10Gi"},
                         "claimRef": {"namespace": "mlops", "name": "kept-data"}}})
    for claim in [*volumes, "mlops/kept-data"]:
        ns, name = claim.split("/")
        server.put(("v1", "persistentvolumeclaims", ns, name),
                   {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": ns},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}})
    (project / ".mlops").mkdir(exist_ok=True)
    write_kubeconfig(project / ".mlops" / "eks-kubeconfig", emu.url)
    with (project / "mlops.toml").open("a") as fh:
        fh.write("[eks]\nrelease_poll_s = 0.2\nrelease_timeout_s = 120\n")  # generous: a loaded CI machine

    ws = FakeWorkspace(outputs={**OUTPUTS, "vpc_id": vpc})
    seen_at_destroy: dict[str, set] = {}
    real_destroy = ws.destroy

    def destroy(on_step):
        seen_at_destroy["elbs"] = set(aws_sweep.classic_elbs(client))
        seen_at_destroy["volumes"] = {v["VolumeId"] for v in client.ec2.describe_volumes()["Volumes"]}
        return real_destroy(on_step)

    ws.destroy = destroy
    monkeypatch.setattr(pulumi_workspace, "open_stack", lambda config, program, *, create: ws)
    controller = CloudController(emu, client, lbs, volumes)
    controller.start()
    yield {"emu": emu, "aws": client, "ws": ws, "at_destroy": seen_at_destroy, "sg": sg, "eks_sg": eks_sg,
           "shared_sg": shared_sg, "leaked_volume": leaked_volume, "retained_volume": retained_volume,
           "volumes": volumes}
    controller.stop.set()
    emu.__exit__(None, None, None)


@pytest.mark.slow
def test_down_empties_the_cluster_waits_for_aws_destroys_and_sweeps(cli, world):
    started = time.monotonic()
    result = cli("down", "--target", "eks", "--yes")
    out = " ".join((result.stdout + result.stderr).split())
    assert result.exit_code == 0, out
    emu, client = world["emu"], world["aws"]
    # 1. Every LoadBalancer Service and PVC is gone from the cluster; other Services are not ours to delete.
    assert not emu.server.objects_of("PersistentVolumeClaim"), out
    assert not [o for o in emu.server.objects_of("Service") if o["spec"].get("type") == "LoadBalancer"], out
    # 2. Destroy ran only after AWS had released the Services' load balancers (which took RELEASE_DELAY_S).
    assert "destroy" in world["ws"].calls, out
    assert not {"a1ingress", "a2kourier"} & world["at_destroy"]["elbs"], out
    assert not set(world["volumes"].values()) & world["at_destroy"]["volumes"], out  # the PVCs' volumes, likewise
    assert time.monotonic() - started >= RELEASE_DELAY_S
    # 3. The sweep removed the planted leftovers in the stack's VPC, reported each, and left alone what is not
    # its to take (issue 23 point 3): another cluster's ELB, the same tag in another VPC, EKS's own group
    # and its rule, a `shared` group, volumes of no deleted claim or of a retaining PV.
    assert set(aws_sweep.classic_elbs(client)) == {"otherclusterelb", "othervpcelb"}, out
    groups = {g["GroupId"]: g for g in client.ec2.describe_security_groups()["SecurityGroups"]}
    assert world["sg"] not in groups and {world["eks_sg"], world["shared_sg"]} <= set(groups), out
    assert groups[world["eks_sg"]]["IpPermissions"], "a rule of EKS's cluster security group was revoked"
    remaining = {v["VolumeId"] for v in client.ec2.describe_volumes()["Volumes"]}
    assert {world["leaked_volume"], world["retained_volume"]} <= remaining and not set(world["volumes"].values()) & remaining
    assert "classic-elb leakedelb" in out and f"security-group {world['sg']}" in out
    assert f"kept volume {world['leaked_volume']}" in out and f"kept security-group {world['eks_sg']}" in out


def test_sweep_of_a_clean_account_removes_nothing(moto_env):
    vpc = moto_env.ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    assert aws_sweep.sweep(moto_env, aws_sweep.Scope(CLUSTER, vpc)).removed == []


def _live_cluster(client, vpc: str, subnet: str) -> None:
    client.eks.create_cluster(name=CLUSTER, roleArn="arn:aws:iam::123456789012:role/eks",
                              resourcesVpcConfig={"subnetIds": [subnet]})


def test_sweep_on_a_live_cluster_touches_no_security_group(moto_env):
    # The retry after a failed destroy: the cluster still runs. The old sweep revoked every inbound rule of the
    # EKS cluster security group (tagged kubernetes.io/cluster/<name> = owned) and then failed to delete it.
    client = moto_env
    vpc = client.ec2.create_vpc(CidrBlock="10.3.0.0/16")["Vpc"]["VpcId"]
    subnet = client.ec2.create_subnet(VpcId=vpc, CidrBlock="10.3.0.0/20", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    _live_cluster(client, vpc, subnet)
    cluster_sg = _group(client, vpc, "eks-cluster-sg", **{TAG: "owned", aws_sweep.EKS_CLUSTER_SG_TAG: CLUSTER})
    elb_sg = _group(client, vpc, "k8s-elb-a1", **{TAG: "owned"})
    client.ec2.authorize_security_group_ingress(GroupId=cluster_sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 30080, "ToPort": 30080, "UserIdGroupPairs": [{"GroupId": elb_sg}]}])
    report = aws_sweep.sweep(client, aws_sweep.Scope(CLUSTER, vpc))
    groups = {g["GroupId"]: g for g in client.ec2.describe_security_groups(GroupIds=[cluster_sg, elb_sg])["SecurityGroups"]}
    assert set(groups) == {cluster_sg, elb_sg} and groups[cluster_sg]["IpPermissions"]
    assert not report.failed and {k.id for k, _ in report.kept} == {cluster_sg, elb_sg}
    assert any("still exists" in why for _, why in report.kept)


def test_sweep_waits_for_the_load_balancers_interfaces_before_deleting_their_group(moto_env):
    client = moto_env
    vpc = client.ec2.create_vpc(CidrBlock="10.4.0.0/16")["Vpc"]["VpcId"]
    subnet = client.ec2.create_subnet(VpcId=vpc, CidrBlock="10.4.0.0/20", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    _elb(client, "gone", subnet, **{TAG: "owned"})
    group = _group(client, vpc, "k8s-elb-gone", **{TAG: "owned"})
    # ELB names its interfaces "ELB <name>"; they outlive the load balancer by minutes and hold its group.
    eni = client.ec2.create_network_interface(SubnetId=subnet, Description="ELB gone")["NetworkInterface"]["NetworkInterfaceId"]
    order: list[str] = []

    def sleep(seconds: float) -> None:
        order.append("waited")
        client.ec2.delete_network_interface(NetworkInterfaceId=eni)

    report = aws_sweep.sweep(client, aws_sweep.Scope(CLUSTER, vpc), interval_s=0, sleep=sleep)
    assert order == ["waited"] and [r.id for r in report.removed] == ["gone", group]
    assert not client.ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [group]}])["SecurityGroups"]


# ------------------------------------------------------------------ the endpoint from another network (point 5)


def _stubbed_eks(cidrs: list[str], statuses: list[str]):
    """A real botocore EKS client with a Stubber: every request is validated against the service model."""
    import botocore.session
    from botocore.stub import Stubber

    eks = botocore.session.get_session().create_client("eks", region_name="us-east-1", aws_access_key_id="a",
                                                       aws_secret_access_key="b")
    stub = Stubber(eks)
    stub.add_response("describe_cluster", {"cluster": {"name": CLUSTER, "resourcesVpcConfig": {
        "endpointPublicAccess": True, "endpointPrivateAccess": True, "publicAccessCidrs": cidrs}}}, {"name": CLUSTER})
    if statuses:
        stub.add_response("update_cluster_config", {"update": {"id": "u-1", "status": "InProgress"}}, {
            "name": CLUSTER, "resourcesVpcConfig": {"endpointPublicAccess": True,
                                                    "publicAccessCidrs": [*cidrs, "198.51.100.23/32"]}})
        for status in statuses:
            stub.add_response("describe_update", {"update": {"id": "u-1", "status": status}},
                              {"name": CLUSTER, "updateId": "u-1"})
    stub.activate()
    return eks, stub


def test_the_endpoint_is_opened_to_this_address_and_waited_for():
    from mlops_cli.adapters import eks_endpoint

    eks, stub = _stubbed_eks(["203.0.113.7/32"], ["InProgress", "Successful"])
    access = eks_endpoint.allow_address(eks, CLUSTER, "198.51.100.23", interval_s=0, sleep=lambda s: None)
    assert access.opened == "198.51.100.23/32" and access.cidrs == ("203.0.113.7/32", "198.51.100.23/32")
    stub.assert_no_pending_responses()
    eks, stub = _stubbed_eks(["198.51.100.0/24"], [])   # already allowed: no update
    assert eks_endpoint.allow_address(eks, CLUSTER, "198.51.100.23").opened == ""
    stub.assert_no_pending_responses()


def test_down_opens_the_endpoint_before_any_cluster_call_and_says_so(cli, project, workspace, kubernetes_target,
                                                                      monkeypatch):
    from mlops_cli.adapters import eks_endpoint

    def allow(eks, cluster, address, **_):
        workspace.calls.append(f"open endpoint to {address}")
        return eks_endpoint.EndpointAccess(("203.0.113.7/32", f"{address}/32"), f"{address}/32")

    monkeypatch.setattr(eks_endpoint, "allow_address", allow)
    result = cli("down", "--target", "eks", "--yes")
    out = " ".join((result.stdout + result.stderr).split())
    assert result.exit_code == 0, out
    calls = workspace.calls
    assert calls.index("open endpoint to 198.51.100.23") < calls.index("platform down") < calls.index("destroy")
    assert "opened to your address 198.51.100.23/32" in out


def test_wait_gives_up_after_the_timeout_and_says_what_is_held(moto_env):
    client = moto_env
    vpc = client.ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = client.ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.0.0/20", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    _elb(client, "stuck", subnet, **{TAG: "owned", aws_sweep.SERVICE_TAG: "ns/svc"})
    now = [0.0]
    held = aws_sweep.wait_released(client, CLUSTER, {"ns/svc"}, set(), timeout_s=10, interval_s=5,
                                   clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert [h.id for h in held] == ["stuck"] and now[0] >= 10


# ------------------------------------------------------------------------------ the bucket (point 8)


def test_down_keeps_even_an_empty_bucket_and_the_next_up_adopts_it(cli, project, workspace, kubernetes_target):
    from mlops_cli.cloud.eks_records import kept_bucket
    from mlops_cli.config.loading import load_config

    result = cli("down", "--target", "eks", "--yes")
    assert result.exit_code == 0, result.stderr
    assert "forget mlops:storage:ArtifactBucket" in workspace.calls
    assert kept_bucket(load_config()) == OUTPUTS["bucket_name"]
    assert "--purge" in " ".join(result.stderr.split())

    from tests.pulumi_mocks import PROJECT, declare_platform

    bucket = declare_platform(adopt_bucket=OUTPUTS["bucket_name"]).one("aws:s3/bucket:Bucket")
    assert bucket.resource_id == OUTPUTS["bucket_name"]  # imported, not created under a name that is taken
    assert bucket.inputs["bucket"] == OUTPUTS["bucket_name"] and PROJECT


def test_down_purge_deletes_the_bucket_with_its_data(cli, project, workspace, aws, kubernetes_target):
    aws["has_data"] = True
    result = cli("down", "--target", "eks", "--yes", "--purge")
    assert result.exit_code == 0, result.stderr
    assert aws["emptied"] == [OUTPUTS["bucket_name"]]
    assert not any(c.startswith("forget") for c in workspace.calls)
