"""Issue 11 point 4 and acceptance 2: the node group holds what the install renders, or `up` says so.

Requests come from the objects the install applies (charts.platform.all_objects, with the offline bundle of
tests/upstream_bundle.py: the real upstream release files, tests/upstream_files.py), allocatable capacity from the EKS AL2023
AMI's reservation formula (mlops_cli/cloud/capacity.py names the source lines).
"""

from __future__ import annotations

import pytest

from mlops_cli.cloud import capacity
from mlops_cli.cloud.capacity import allocatable, covers, plan_nodes, platform_requests


@pytest.fixture
def rendered(tmp_path, project):
    """The rendered platform's requests for a project with the offline upstream bundle."""
    from charts.objects import resources
    from charts.platform import all_objects
    from mlops_cli.config.loading import load_config
    from tests.upstream_bundle import build_bundle, kubernetes_toml

    pins = build_bundle(tmp_path / "bundle")
    with (project / "mlops.toml").open("a") as fh:
        fh.write(kubernetes_toml(tmp_path / "bundle", pins))
    config = load_config()
    return platform_requests(all_objects(config, None), resources(config, "predictor"))


def test_reservations_follow_the_eks_ami_formula():
    # nodeadm getCPUMillicoresToReserve: 6% + 1% + 0.5% + 0.5% + 0.25% per further core.
    assert [capacity.kube_reserved_cpu_m(n) for n in (1, 2, 4, 8)] == [60, 70, 80, 90]
    # max pods = ENIs x (IPs per ENI - 1) + 2: the figures of amazon-eks-ami's eni-max-pods.txt.
    assert {t: allocatable(t).max_pods for t in ("m6i.large", "m6i.xlarge", "t3.medium", "t3.large")} == \
        {"m6i.large": 29, "m6i.xlarge": 58, "t3.medium": 17, "t3.large": 35}
    large = allocatable("m6i.large")
    assert large.cpu_m == 1930
    assert large.mem_mib == pytest.approx(8192 * 0.925 - (11 * 29 + 255) - 100)


def test_pod_requests_count_init_containers_and_replicas():
    spec = {"containers": [{"resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}},
                           {"resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "1", "memory": "64Mi"}}}]}
    pod = capacity.pod_requests(spec)
    assert (pod.cpu_m, pod.mem_mib) == (1000, 1536)
    dep = {"kind": "Deployment", "metadata": {"name": "gw", "namespace": "mlops"},
           "spec": {"template": {"spec": spec}}}
    hpa = {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "gw", "namespace": "mlops"},
           "spec": {"scaleTargetRef": {"name": "gw"}, "minReplicas": 3}}
    reqs = platform_requests([dep, hpa])
    ours = dict(reqs.items)["Deployment gw x3"]
    assert ours.cpu_m == 3000 and ours.pods == 3


def test_a_daemonset_for_labelled_nodes_only_is_not_counted_on_every_node(rendered):
    """KServe's kserve-localmodelnode-agent selects nodes labelled kserve/localmodel=worker (kserve.yaml,
    config/localmodelnodes/manager.yaml at v0.20.0): our node groups carry no such label, so it runs nowhere.
    A DaemonSet that selects only the labels every Linux node has (kubernetes.io/os) runs on each."""
    names = [name for name, _ in rendered.items]
    assert not any("kserve-localmodelnode-agent" in n for n in names), names
    pod = {"containers": [{"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    every = {"kind": "DaemonSet", "metadata": {"name": "every"}, "spec": {"template": {"spec": {**pod, "nodeSelector": {"kubernetes.io/os": "linux"}}}}}
    some = {"kind": "DaemonSet", "metadata": {"name": "some"}, "spec": {"template": {"spec": {**pod, "nodeSelector": {"disk": "ssd"}}}}}
    reqs = platform_requests([every, some])
    assert "DaemonSet every (per node)" in dict(reqs.items) and "DaemonSet some (per node)" not in dict(reqs.items)
    assert platform_requests([some], node_labels={"disk": "ssd"}).items[0][0] == "DaemonSet some (per node)"


def test_the_old_default_of_two_m6i_large_does_not_hold_the_platform(rendered):
    assert rendered.cluster.cpu_m > 3000  # our charts + the upstream releases + one predictor + kube-system
    assert not covers(rendered, "m6i.large", 2)


def test_default_program_declares_node_groups_that_hold_the_rendered_platform(rendered):
    from tests.pulumi_mocks import declare

    d = declare()
    [group] = d.of("aws:eks/nodeGroup:NodeGroup")
    kind = group.inputs["instanceTypes"][0]
    nodes = group.inputs["scalingConfig"]["desiredSize"]
    assert covers(rendered, kind, nodes), plan_nodes(rendered, kind).summary()
    assert group.inputs["scalingConfig"]["maxSize"] > nodes  # and room to scale (the autoscaler acts on it)
    d.one("kubernetes:helm.sh/v3:Release", "autoscaler")


def test_a_pod_larger_than_any_node_is_refused():
    big_predictor = platform_requests([], {"requests": {"cpu": "3", "memory": "1Gi"}})
    with pytest.raises(capacity.DoesNotFit, match="one pod requests 3025m CPU"):
        plan_nodes(big_predictor, "t3.medium")


# ------------------------------------------------------------------------ through `mlops up --target eks`


@pytest.fixture
def opened(monkeypatch):
    """Records the config the stack is opened with (what the Pulumi program is built from)."""
    from mlops_cli.adapters import pulumi_workspace
    from tests.eks_support import FakeWorkspace

    seen = {}

    def open_stack(config, program, *, create):
        seen["eks"] = config.eks
        return FakeWorkspace()

    monkeypatch.setattr(pulumi_workspace, "open_stack", open_stack)
    return seen


def test_up_sizes_the_node_group_up_and_says_so(cli, project, aws, opened):
    with (project / "mlops.toml").open("a") as fh:
        fh.write('[eks]\ninstance_types = ["m6i.large"]\ndesired_size = 2\nmax_size = 6\n')
    result = cli("--json", "up", "--target", "eks", "--preview")
    assert result.exit_code == 0, result.stderr
    # 4 m6i.large: the real release manifests request more than the old stand-ins did (KServe's
    # controller + kube-rbac-proxy, Knative's activator/autoscaler/controller/webhook, Kourier's gateway)
    assert opened["eks"].desired_size == 4 and opened["eks"].instance_types == ["m6i.large"]
    assert "starting with 4 nodes instead of eks.desired_size = 2" in " ".join(result.stderr.split())


def test_up_refuses_when_max_size_cannot_hold_the_platform(cli, project, aws, opened):
    with (project / "mlops.toml").open("a") as fh:
        fh.write('[eks]\ninstance_types = ["m6i.large"]\nmin_size = 1\ndesired_size = 2\nmax_size = 2\n')
    result = cli("up", "--target", "eks", "--preview")
    assert result.exit_code == 2
    err = " ".join(result.stderr.split())
    assert "eks.max_size = 2" in err and "at least 4" in err
    assert "eks" not in opened  # refused before the stack was opened


def test_up_resolves_the_endpoint_to_the_egress_address(cli, project, aws, opened):
    result = cli("up", "--target", "eks", "--preview")
    assert result.exit_code == 0, result.stderr
    assert opened["eks"].public_access_cidrs == ["198.51.100.23/32"]


def test_up_warns_about_an_endpoint_open_to_the_internet(cli, project, aws, opened):
    with (project / "mlops.toml").open("a") as fh:
        fh.write('[eks]\npublic_access_cidrs = ["0.0.0.0/0"]\n')
    result = cli("up", "--target", "eks", "--preview")
    assert result.exit_code == 0, result.stderr
    err = " ".join(result.stderr.split())
    assert "0.0.0.0/0" in err and "whole internet" in err
    assert opened["eks"].public_access_cidrs == ["0.0.0.0/0"]


def test_egress_address_is_read_from_checkip(monkeypatch):
    import httpx

    from mlops_cli.adapters import pulumi_aws_account
    from mlops_cli.common.errors import PreflightError

    def answer(text):
        return httpx.MockTransport(lambda request: httpx.Response(200, text=text))

    monkeypatch.setattr(httpx, "get", lambda url, **kw: httpx.Client(transport=answer("192.0.2.9\n")).get(url))
    assert pulumi_aws_account.egress_address() == "192.0.2.9"
    monkeypatch.setattr(httpx, "get", lambda url, **kw: httpx.Client(transport=answer("<html>")).get(url))
    with pytest.raises(PreflightError, match="public_access_cidrs"):
        pulumi_aws_account.egress_address()


# ------------------------------------------------------------------------ issue 23 point 9: VPC addresses


def test_a_vpc_too_small_for_the_cnis_addresses_is_refused_before_anything(cli, project, workspace):
    from mlops_cli.cloud.capacity import vpc_address_shortfall

    assert vpc_address_shortfall("10.0.0.0/16", 2, "m6i.xlarge", 4) == ""
    short = vpc_address_shortfall("10.0.0.0/22", 2, "m6i.xlarge", 4)
    assert "/26 private subnets of 59 usable addresses" in short and "180 VPC CNI addresses" in short
    with (project / "mlops.toml").open("a") as fh:
        fh.write('[eks]\nvpc_cidr = "10.0.0.0/22"\n')
    result = cli("up", "--target", "eks", "--preview")
    assert result.exit_code == 2 and "the VPC is too small for its pods" in " ".join(result.stderr.split())
    assert "preview" not in workspace.calls
