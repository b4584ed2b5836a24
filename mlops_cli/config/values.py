"""The value types of the configuration, checked when it loads and kept as written: a duration, a storage
quantity, an http(s) URL, an MLflow tracking URI, a target or data source name; and `Section`, the base of
every section (unknown keys refused).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..common.time_window import duration_seconds

TargetName = Literal["local", "kubernetes", "eks"]
# The packaged review corpora (data/data_sources.py says what each is and where it comes from).
DataSourceName = Literal["drugscom", "rotten_tomatoes", "tweets", "amazon_snippets"]


def _duration(value: str) -> str:
    duration_seconds(value)
    return value


# A time span such as "30m", "24h" or "7d" (units s, m, h, d, w), checked when the config loads and kept
# as written; `time_window.parse_duration` turns it into a timedelta where it is used.
Duration = Annotated[str, AfterValidator(_duration)]
# A Kubernetes storage quantity in binary units, e.g. "10Gi": what a PersistentVolumeClaim requests.
Quantity = Annotated[str, Field(pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)$")]


def _http_url(value: str) -> str:
    if value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host, e.g. http://127.0.0.1:9000 "
                             "(empty: not used)")
    return value


# MLflow's tracking-store schemes (mlflow/tracking/_tracking_service/utils.py registers "", file,
# databricks, http, https and mlflow/store/db/db_types.py's DATABASE_ENGINES); a bare path is refused
# here so that a typo such as "localhost:5000" is not taken for a directory or a scheme.
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def _tracking_uri(value: str) -> str:
    if not value or value == "databricks":
        return value
    parts = urlsplit(value)
    scheme = parts.scheme.split("+", 1)[0]  # postgresql+psycopg2: SQLAlchemy's dialect+driver
    ok = ((scheme in ("http", "https") and parts.hostname)
          or (scheme in _DB_SCHEMES and value.startswith(f"{parts.scheme}://"))
          or (scheme == "file" and parts.path.startswith("/")) or scheme == "databricks")
    if not ok:
        raise ValueError("expected an MLflow tracking URI: http(s)://host[:port], sqlite:///path, "
                         "postgresql://..., mysql://..., mssql://..., file:///path or databricks "
                         "(empty: the embedded store in the state dir)")
    return value


# MLflow 3.17.2's rule for an alias that can be set (mlflow/utils/validation.py: _validate_model_alias_name
# with _REGISTERED_MODEL_ALIAS_REGEX `^[\w\-]*$`, non-empty, MAX_REGISTERED_MODEL_ALIAS_LENGTH 255; and
# _validate_model_alias_name_reserved: not "latest" in any case, not `^[vV]\d+$`). The registry checks it
# only when the alias is used, as a traceback; we check it where an alias enters: the config and --alias.
_ALIAS = re.compile(r"^[\w\-]*$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
ALIAS_RULE = "letters, digits, underscores (_) and dashes (-), at most 255, not 'latest' nor v<number>"


def alias_problem(alias: str) -> str | None:
    """Why MLflow would refuse `alias` as a registered model alias, or None when it is fine."""
    if not alias:
        return "an alias cannot be empty"
    if not _ALIAS.match(alias):
        return f"alias {alias!r} has characters MLflow refuses: use {ALIAS_RULE}"
    if len(alias) > 255:
        return f"alias is {len(alias)} characters long; MLflow allows at most 255"
    if alias.lower() == "latest" or _VERSION_ALIAS.match(alias):
        return f"alias {alias!r} is reserved by MLflow ('latest' and v<number> name versions)"
    return None


def _alias(value: str) -> str:
    problem = alias_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# A registered model alias MLflow accepts, e.g. "champion" or "staging".
AliasName = Annotated[str, AfterValidator(_alias)]

# URLs checked when the config loads and kept as written (no normalising, no added slash).
HttpUrl = Annotated[str, AfterValidator(_http_url)]
TrackingUri = Annotated[str, AfterValidator(_tracking_uri)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
