"""The Automation API seam: one Pulumi stack opened from `[eks]`, driven by preview/up/destroy.

Everything the EKS target needs from Pulumi goes through `StackWorkspace`; tests substitute
`open_stack` with their own workspace instead of patching Pulumi internals. Pulumi is imported only
inside functions here (`mlops --help` must not pay for it).

State lives in a local file backend under `<state_dir>/pulumi/state` unless `[eks].backend_url` names
another (e.g. `s3://bucket/prefix`); secrets (the kubeconfig output) are encrypted with
`PULUMI_CONFIG_PASSPHRASE`, or with the KMS key in `[eks].kms_key`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Protocol

from ..common.errors import MlopsError, NotFoundError, PreflightError
from ..config.settings import Config

INSTALL_HINT = "curl -fsSL https://get.pulumi.com | sh"
PASSPHRASE_ENV = "PULUMI_CONFIG_PASSPHRASE"
# Provider plugins the program uses, pinned to the versions of the installed Python SDKs.
PLUGIN_PACKAGES = ("pulumi_aws", "pulumi_kubernetes")


@dataclass
class ResourceStep:
    """One resource in a preview or an update: what Pulumi will do (or did) to it."""

    op: str                     # create, update, replace, delete, same, read, ...
    type: str                   # e.g. aws:ec2/natGateway:NatGateway
    name: str                   # the logical name in the program
    urn: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)  # engine (camelCase) inputs: sizes, types
    status: str = "planned"     # planned, done, failed

    @property
    def changes(self) -> bool:
        return self.op not in ("same", "read")


@dataclass
class UpdateInfo:
    kind: str                   # update, destroy, preview, refresh
    result: str                 # succeeded, failed, in-progress
    started: str
    ended: str = ""
    changes: dict[str, int] = field(default_factory=dict)


StepCallback = Callable[[ResourceStep], None]


class StackWorkspace(Protocol):
    """What the EKS target does with its stack. `open_stack` returns the real one."""

    name: str

    def preview(self, on_step: StepCallback) -> list[ResourceStep]: ...

    def up(self, on_step: StepCallback) -> dict[str, Any]: ...

    def destroy(self, on_step: StepCallback) -> None: ...

    def outputs(self) -> dict[str, Any]: ...

    def last_update(self) -> UpdateInfo | None: ...

    def forget(self, component_type: str) -> list[str]:
        """Drop a component and its children from the state, leaving them in the cloud."""
        ...


def find_cli() -> str | None:
    return shutil.which("pulumi")


def require_cli() -> str:
    path = find_cli()
    if path is None:
        raise PreflightError("the Pulumi CLI is not installed (`pulumi` is not on PATH)", hint=INSTALL_HINT)
    return path


def backend_url(config: Config) -> str:
    return config.eks.backend_url or (config.state_dir / "pulumi" / "state").resolve().as_uri()


def secrets_provider(config: Config) -> str:
    key = config.eks.kms_key
    if not key:
        return "passphrase"
    if key.startswith("awskms://"):
        return key
    return f"awskms://{key}?region={config.eks.region}"


def require_secrets(config: Config, env: dict[str, str] | None = None) -> str:
    """The secrets provider, or a PreflightError when the passphrase it needs is missing."""
    env = os.environ if env is None else env
    provider = secrets_provider(config)
    if provider == "passphrase" and PASSPHRASE_ENV not in env and f"{PASSPHRASE_ENV}_FILE" not in env:
        raise PreflightError(
            f"{PASSPHRASE_ENV} is not set: Pulumi encrypts the stack's secrets (the kubeconfig) with it",
            hint=f"export {PASSPHRASE_ENV}='<a passphrase you keep>' (or set kms_key in mlops.toml's eks section)",
        )
    return provider


def project_name(config: Config) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", config.project.name).strip("-") or "mlops"


def stack_config(config: Config) -> dict[str, str]:
    """`mlops.toml`'s [eks] as the stack's config (`pulumi config` shows what the stack was built from)."""
    values = {"aws:region": config.eks.region}
    for key, value in config.eks.model_dump().items():
        values[f"mlops:{key}"] = value if isinstance(value, str) else json.dumps(value)
    return values


def plugin_versions() -> dict[str, str]:
    out = {}
    for package in PLUGIN_PACKAGES:
        meta = json.loads(resources.files(package).joinpath("pulumi-plugin.json").read_text())
        out[meta["name"]] = "v" + meta["version"]
    return out


def open_stack(config: Config, program: Callable[[], None], *, create: bool) -> StackWorkspace:
    """The configured stack, running `program` (the caller's Pulumi program, stacks/program.py's `inline`):
    created or selected (`create`), or selected only (NotFoundError if absent)."""
    from pulumi import automation as auto

    backend = backend_url(config)
    if backend.startswith("file://"):
        Path(backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    # A fixed work dir (not a temp one) keeps Pulumi.<stack>.yaml, with the secrets salt, between runs.
    work_dir = config.state_dir / "pulumi" / "project"
    work_dir.mkdir(parents=True, exist_ok=True)
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(work_dir),
        project_settings=auto.ProjectSettings(name=project_name(config), runtime="python",
                                              backend=auto.ProjectBackend(url=backend)),
        secrets_provider=secrets_provider(config),
        env_vars={"PULUMI_SKIP_UPDATE_CHECK": "true"},
    )
    name = config.eks.stack
    try:
        if create:
            stack = auto.create_or_select_stack(name, project_name=project_name(config),
                                                program=program, opts=opts)
            for plugin, version in plugin_versions().items():
                stack.workspace.install_plugin(plugin, version)
            stack.set_all_config({k: auto.ConfigValue(v) for k, v in stack_config(config).items()})
        else:
            stack = auto.select_stack(name, project_name=project_name(config), program=program, opts=opts)
    except auto.StackNotFoundError:
        raise NotFoundError(f"no EKS stack {name!r} in {backend}",
                            hint="create it with `mlops up --target eks`, or fix stack / backend_url in mlops.toml's eks section") from None
    except auto.CommandError as exc:
        raise _command_failed("open the stack", exc) from None
    return PulumiStack(stack)


class PulumiStack:
    """StackWorkspace over a real `pulumi.automation.Stack`."""

    def __init__(self, stack: Any) -> None:
        self._stack = stack
        self.name = stack.name

    def preview(self, on_step: StepCallback) -> list[ResourceStep]:
        steps: list[ResourceStep] = []

        def collect(step: ResourceStep) -> None:
            steps.append(step)
            on_step(step)

        self._run("preview", lambda: self._stack.preview(on_event=_events(collect), diff=False))
        return steps

    def up(self, on_step: StepCallback) -> dict[str, Any]:
        result = self._run("up", lambda: self._stack.up(on_event=_events(on_step)))
        return {k: v.value for k, v in result.outputs.items()}

    def destroy(self, on_step: StepCallback) -> None:
        self._run("destroy", lambda: self._stack.destroy(on_event=_events(on_step)))

    def outputs(self) -> dict[str, Any]:
        return {k: v.value for k, v in self._run("stack output", self._stack.outputs).items()}

    def last_update(self) -> UpdateInfo | None:
        info = self._run("stack history", self._stack.info)
        if info is None:
            return None
        return UpdateInfo(kind=info.kind, result=info.result, started=info.start_time.isoformat(),
                          ended=info.end_time.isoformat() if info.end_time else "",
                          changes=dict(info.resource_changes or {}))

    def forget(self, component_type: str) -> list[str]:
        deployment = self._run("stack export", self._stack.export_stack)
        resources_ = deployment.deployment.get("resources", [])
        forgotten = {r["urn"] for r in resources_ if _within(r["urn"], component_type)}
        if forgotten:
            kept = [r for r in resources_ if r["urn"] not in forgotten]
            for r in kept:  # an import is refused while a kept resource still points at a forgotten one
                r["dependencies"] = [d for d in r.get("dependencies") or [] if d not in forgotten]
                for key, deps in (r.get("propertyDependencies") or {}).items():
                    r["propertyDependencies"][key] = [d for d in deps if d not in forgotten]
                if r.get("deletedWith") in forgotten:
                    del r["deletedWith"]
            deployment.deployment["resources"] = kept
            self._run("stack import", lambda: self._stack.import_stack(deployment))
        return sorted(forgotten)

    def _run(self, what: str, fn: Callable[[], Any]) -> Any:
        from pulumi import automation as auto

        try:
            return fn()
        except auto.ConcurrentUpdateError:
            raise MlopsError(f"another Pulumi operation holds stack {self.name!r}",
                             hint="wait for it to finish; if it crashed, run `pulumi cancel` in "
                                  "the stack's work dir") from None
        except auto.CommandError as exc:
            raise _command_failed(what, exc) from None


def _within(urn: str, component_type: str) -> bool:
    # urn:pulumi:<stack>::<project>::<parent types joined by $>$<type>::<name>
    parts = urn.split("::")
    return len(parts) >= 4 and component_type in parts[2].split("$")


def _events(on_step: StepCallback) -> Callable[[Any], None]:
    """Engine events -> one ResourceStep per resource as it is planned, finished or failed."""
    seen: dict[str, ResourceStep] = {}

    def handle(event: Any) -> None:
        pre = event.resource_pre_event
        if pre is not None:
            step = _step(pre.metadata)
            if step is not None:
                seen[step.urn] = step
                on_step(step)
            return
        for done, status in ((event.res_outputs_event, "done"), (event.res_op_failed_event, "failed")):
            if done is not None and done.metadata.urn in seen:
                step = seen[done.metadata.urn]
                step.status = status
                on_step(step)

    return handle


def _step(meta: Any) -> ResourceStep | None:
    if meta.type.startswith("pulumi:"):  # the stack itself and provider instances: not resources you pay for
        return None
    state = meta.new or meta.old
    return ResourceStep(op=getattr(meta.op, "value", str(meta.op)), type=meta.type, name=meta.urn.rsplit("::", 1)[-1],
                        urn=meta.urn, inputs=dict(getattr(state, "inputs", None) or {}))


def _command_failed(what: str, exc: Any) -> MlopsError:
    # CommandError keeps only its text: " code: N\n stdout: ...\n stderr: ...". The error lines say why.
    text = str(exc)
    lines = [ln.strip().removeprefix("stderr:").removeprefix("stdout:").strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("code:")]
    detail = "; ".join(([ln for ln in lines if "error" in ln.lower()] or lines)[-3:]) or type(exc).__name__
    lowered = text.lower()
    hint = None
    if "passphrase" in lowered:
        hint = f"set {PASSPHRASE_ENV} to the passphrase this stack was created with"
    elif "credential" in lowered or "expiredtoken" in lowered:
        hint = "refresh your AWS credentials (aws sso login / AWS_PROFILE) and retry"
    return MlopsError(f"pulumi {what} failed: {detail}", hint=hint)
