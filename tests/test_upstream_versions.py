"""The upstream versions we install and their support (issue 22 item 6): every default version is in the
dated table (charts/upstream_versions.py names each fact's source), cert-manager is on a line supported on
the Kubernetes minors we validate (1.34, 1.35), and `mlops doctor` warns past support. Support is judged on
the table's own AS_OF date, so the calendar alone turns nothing red."""

from __future__ import annotations

import json
import tomllib
from datetime import date

from charts import upstream_versions
from charts.upstream_versions import AS_OF
from mlops_cli.config.cluster_sections import KubernetesConfig
from tests.support import REPO

COMPONENTS = ("cert_manager", "knative", "kourier", "kserve", "envoy_gateway")


def _defaults():
    from mlops_cli.config.settings import Config

    return Config()


def test_every_default_version_is_in_the_table_with_its_source():
    for component, version, row in upstream_versions.configured(_defaults()):
        assert row is not None, f"{component} {version} is not in charts/upstream_versions.py"
        assert row.released <= AS_OF and row.source, row
        assert row.supported_until is not None or row.until_note, row


def test_the_shipped_file_names_the_same_versions_as_the_config_defaults():
    """One place for the versions: mlops.toml's [kubernetes] says what the defaults say (the Go modules the
    upstream-file tests fetch follow these)."""
    shipped = tomllib.loads((REPO / "mlops.toml").read_text())["kubernetes"]
    for component in COMPONENTS:
        field = f"{component}_version"
        assert shipped[field] == getattr(KubernetesConfig(), field), field


def test_cert_manager_is_supported_on_the_kubernetes_minors_we_validate():
    row = upstream_versions.lookup("cert_manager", KubernetesConfig().cert_manager_version)
    assert row.supports("1.34") and row.supports("1.35")
    assert row.supported_until is None or row.supported_until > AS_OF
    old = upstream_versions.lookup("cert_manager", "v1.17.0")  # what we shipped before: 1.29 -> 1.33
    assert old.supports("1.34") is False and old.supports("1.33") is True


def test_support_on_the_tables_own_date():
    config = _defaults()
    found = upstream_versions.warnings(config, AS_OF)
    k = config.kubernetes
    assert found == [f"knative {k.knative_version}: out of support since 2026-08-04 (Knative 1.21 end of life)",
                     f"kourier {k.kourier_version}: out of support since 2026-08-04 (Knative 1.21 end of life)",
                     f"envoy_gateway {k.envoy_gateway_version}: out of support since 2026-11-08 (Envoy Gateway 1.8 end of life)"]
    assert upstream_versions.warnings(config, date(2026, 8, 3)) == []  # the day before Knative 1.21's end
    newer = config.with_overrides({"kubernetes.version": "1.36"})
    assert any("envoy_gateway" in w and "1.32 -> 1.35, not [kubernetes].version 1.36" in w
               for w in upstream_versions.warnings(newer, date(2026, 8, 3)))
    unknown = config.with_overrides({"kubernetes.kserve_version": "v9.9.9"})
    assert "kserve v9.9.9 is not in the support table" in upstream_versions.warnings(unknown, date(2026, 8, 3))[0]


def test_doctor_warns_past_support_without_failing_on_it(cli, project):
    (project / "mlops.toml").write_text('[project]\nname = "t"\ntarget = "kubernetes"\n')
    result = cli("--json", "doctor")
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    check = checks["upstream versions supported"]
    assert check["required"] is False and check["ok"] is (date.today() < date(2026, 8, 4))
    if not check["ok"]:
        assert "knative knative-v1.21.2: out of support since 2026-08-04" in check["detail"]
        assert "mlops lock --upgrade" in check["fix"]
