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
    # Leftovers of earlier days, and another cluster's load balancer that must survive.
    _elb(client, "leakedelb", subnet, **{TAG: "owned", aws_sweep.SERVICE_TAG: "old/gone"})
    _elb(client, "otherclusterelb", subnet, **{"kubernetes.io/cluster/other": "owned"})
    sg = client.ec2.create_security_group(GroupName="k8s-elb-leaked", Description="leaked", VpcId=vpc,
                                          TagSpecifications=[{"ResourceType": "security-group",
                                                              "Tags": _tags(**{TAG: "owned"})}])["GroupId"]
    leaked_volume = _volume(client, **{TAG: "owned"})

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
    for claim in volumes:
        ns, name = claim.split("/")
        server.put(("v1", "persistentvolumeclaims", ns, name),
                   {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": ns},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}})
    (project / ".mlops").mkdir(exist_ok=True)
    write_kubeconfig(project / ".mlops" / "eks-kubeconfig", emu.url)
    with (project / "mlops.toml").open("a") as fh:
        fh.write("[eks]\nrelease_poll_s = 0.2\nrelease_timeout_s = 120\n")  # generous: a loaded CI machine

    ws = FakeWorkspace()
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
    yield {"emu": emu, "aws": client, "ws": ws, "at_destroy": seen_at_destroy, "sg": sg,
           "leaked_volume": leaked_volume, "volumes": volumes}
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
    # 3. The sweep removed the planted leftovers, reported each, and left the other cluster's ELB alone.
    assert set(aws_sweep.classic_elbs(client)) == {"otherclusterelb"}, out
    assert not client.ec2.describe_security_groups(
        Filters=[{"Name": "tag-key", "Values": [TAG]}])["SecurityGroups"]
    remaining = {v["VolumeId"] for v in client.ec2.describe_volumes()["Volumes"]}
    assert world["leaked_volume"] not in remaining and not set(world["volumes"].values()) & remaining
    assert "classic-elb leakedelb" in out and f"security-group {world['sg']}" in out
    assert f"volume {world['leaked_volume']}" in out


def test_sweep_of_a_clean_account_removes_nothing(moto_env):
    assert aws_sweep.sweep(moto_env, CLUSTER).removed == []


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
