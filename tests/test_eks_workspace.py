"""The Automation API seam's own logic: engine events -> resource steps, state backend, secrets, config."""

from __future__ import annotations

import json

import pytest

from mlops_cli.adapters import pulumi_workspace
from mlops_cli.common.errors import PreflightError
from mlops_cli.config.loading import load_config

auto_events = pytest.importorskip("pulumi.automation.events")

NAT_URN = "urn:pulumi:dev::test-project::mlops:network:Network$aws:ec2/natGateway:NatGateway::network-nat-0"


def _event(**body) -> object:
    return auto_events.EngineEvent.from_json({"sequence": 1, "timestamp": 0, **body})


def _meta(op: str, urn: str, typ: str, inputs: dict | None = None) -> dict:
    return {"metadata": {"op": op, "urn": urn, "type": typ, "provider": "",
                         "new": {"type": typ, "urn": urn, "inputs": inputs or {}}}}


def test_engine_events_become_one_step_per_resource_with_status():
    seen = []
    handle = pulumi_workspace._events(lambda s: seen.append((s.op, s.type, s.name, s.status, dict(s.inputs))))
    handle(_event(resourcePreEvent=_meta("create", "urn:pulumi:dev::test-project::pulumi:pulumi:Stack::test-project-dev",
                                         "pulumi:pulumi:Stack")))
    handle(_event(resourcePreEvent=_meta("create", NAT_URN, "aws:ec2/natGateway:NatGateway", {"subnetId": "s-1"})))
    handle(_event(resOutputsEvent={"metadata": {"op": "create", "urn": NAT_URN, "type": "aws:ec2/natGateway:NatGateway",
                                                "provider": ""}}))
    handle(_event(diagnosticEvent={"message": "info", "color": "never", "severity": "info"}))
    assert seen == [
        ("create", "aws:ec2/natGateway:NatGateway", "network-nat-0", "planned", {"subnetId": "s-1"}),
        ("create", "aws:ec2/natGateway:NatGateway", "network-nat-0", "done", {"subnetId": "s-1"}),
    ]


def test_failed_operation_is_reported_as_failed():
    seen = []
    handle = pulumi_workspace._events(lambda s: seen.append(s.status))
    handle(_event(resourcePreEvent=_meta("create", NAT_URN, "aws:ec2/natGateway:NatGateway")))
    handle(_event(resOpFailedEvent={"metadata": {"op": "create", "urn": NAT_URN, "type": "aws:ec2/natGateway:NatGateway",
                                                 "provider": ""}, "status": 1, "steps": 1}))
    assert seen == ["planned", "failed"]


def test_forget_selects_a_component_and_its_children_only():
    storage = "mlops:storage:ArtifactBucket"
    assert pulumi_workspace._within(f"urn:pulumi:dev::p::{storage}::artifacts", storage)
    assert pulumi_workspace._within(f"urn:pulumi:dev::p::{storage}$aws:s3/bucket:Bucket::artifacts", storage)
    assert not pulumi_workspace._within(NAT_URN, storage)
    assert not pulumi_workspace._within("urn:pulumi:dev::p::mlops:identity:PlatformIdentity$aws:iam/rolePolicy:RolePolicy::b",
                                        storage)


def test_state_backend_defaults_to_a_file_backend_under_state_dir(project):
    cfg = load_config()
    assert pulumi_workspace.backend_url(cfg) == (project / ".mlops" / "pulumi" / "state").as_uri()
    assert pulumi_workspace.backend_url(cfg.with_overrides({"eks.backend_url": "s3://state-bucket/mlops"})) == \
        "s3://state-bucket/mlops"


def test_secrets_passphrase_or_kms(project, monkeypatch):
    cfg = load_config()
    with pytest.raises(PreflightError, match="PULUMI_CONFIG_PASSPHRASE"):
        pulumi_workspace.require_secrets(cfg)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "x")
    assert pulumi_workspace.require_secrets(cfg) == "passphrase"
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    kms = cfg.with_overrides({"eks.kms_key": "alias/pulumi", "eks.region": "eu-west-1"})
    assert pulumi_workspace.require_secrets(kms) == "awskms://alias/pulumi?region=eu-west-1"
    url = cfg.with_overrides({"eks.kms_key": "awskms:///arn:aws:kms:us-east-1:1:key/abc"})
    assert pulumi_workspace.secrets_provider(url) == "awskms:///arn:aws:kms:us-east-1:1:key/abc"


def test_stack_config_mirrors_the_eks_section(project):
    values = pulumi_workspace.stack_config(load_config().with_overrides({"eks.gpu_enabled": True}))
    assert values["aws:region"] == "us-east-1"
    assert values["mlops:gpu_enabled"] == "true"
    assert json.loads(values["mlops:instance_types"]) == ["m6i.xlarge"]


def test_plugins_pinned_to_the_installed_sdks():
    versions = pulumi_workspace.plugin_versions()
    assert set(versions) == {"aws", "kubernetes"}  # the program declares only aws and kubernetes resources
    assert all(v.startswith("v") and v[1].isdigit() for v in versions.values())


def test_a_failed_pulumi_command_becomes_one_readable_error():
    from pulumi.automation import CommandError
    from pulumi.automation._cmd import CommandResult

    exc = CommandError(CommandResult(stdout="Previewing update (dev)\n", code=255,
                                     stderr="error: decrypting secret value: incorrect passphrase\n"))
    err = pulumi_workspace._command_failed("preview", exc)
    assert err.message == "pulumi preview failed: error: decrypting secret value: incorrect passphrase"
    assert "PULUMI_CONFIG_PASSPHRASE" in err.hint


def test_forget_drops_the_bucket_subtree_and_every_reference_to_it():
    from pulumi.automation import Deployment

    bucket = "urn:pulumi:dev::p::mlops:storage:ArtifactBucket$aws:s3/bucket:Bucket::artifacts"
    component = "urn:pulumi:dev::p::mlops:storage:ArtifactBucket::artifacts"
    policy = "urn:pulumi:dev::p::mlops:identity:PlatformIdentity$aws:iam/rolePolicy:RolePolicy::platform-bucket"
    state = {"resources": [
        {"urn": component, "type": "mlops:storage:ArtifactBucket"},
        {"urn": bucket, "type": "aws:s3/bucket:Bucket", "parent": component},
        {"urn": policy, "type": "aws:iam/rolePolicy:RolePolicy", "dependencies": [bucket],
         "propertyDependencies": {"policy": [bucket]}},
    ]}

    class Stack:
        name = "dev"
        imported = None

        def export_stack(self):
            return Deployment(version=3, deployment=state)

        def import_stack(self, deployment):
            Stack.imported = deployment

    forgotten = pulumi_workspace.PulumiStack(Stack()).forget("mlops:storage:ArtifactBucket")
    assert forgotten == sorted([bucket, component])
    [kept] = Stack.imported.deployment["resources"]
    assert kept["urn"] == policy and kept["dependencies"] == [] and kept["propertyDependencies"] == {"policy": []}
