"""Errors a user can cause. The CLI turns each into one message and an exit code.

Exit codes (README "Exit codes"): 2 when the command cannot run as given, so retrying the same command
is pointless until something is fixed (usage, config, input data, a name that does not exist, a missing
tool or credential); 1 when it was fine but failed while running (a server down, an operation refused),
which a script may retry.

    MlopsError (1)
    ├── UsageError (2)           arguments or options that cannot work together or on this target
    ├── ConfigError (2)
    ├── PreflightError (2)       a missing tool, package or credential (`mlops doctor` names it)
    │   └── UnreachableError (1) a server the command talks to does not answer
    ├── DataError (2)
    ├── NotFoundError (2)
    └── Interrupted (130)
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Mapping


class MlopsError(Exception):
    """A failure the user can act on: says what was wrong, where, and what to do next."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class UsageError(MlopsError):
    """The command line asks for something that cannot be done as given: a missing or empty argument,
    options that do not go together, an option the chosen target does not support."""

    exit_code = 2


class ConfigError(MlopsError):
    """The configuration file or an override is wrong."""

    exit_code = 2


class PreflightError(MlopsError):
    """A tool, credential or server the command needs is missing or unreachable."""

    exit_code = 2


class UnreachableError(PreflightError):
    """A server the command needs (gateway, MLflow, API server, Prometheus) does not answer: a runtime
    failure, often transient, unlike a missing prerequisite (a PreflightError still catches it)."""

    exit_code = 1


class DataError(MlopsError):
    """Input data is malformed (names the row or column)."""

    exit_code = 2


class NotFoundError(MlopsError):
    """A run, model version, component or file the user named does not exist."""

    exit_code = 2


class Interrupted(MlopsError):
    """The user pressed Ctrl-C; whatever was in flight was cleaned up."""

    exit_code = 130


class GatewayOverloaded(MlopsError):
    """The serving path shed the request (HTTP 503 or 429 with Retry-After): retry after that many seconds."""

    def __init__(self, message: str, retry_after: str) -> None:
        super().__init__(message, hint="the platform is at capacity: retry later, or send fewer requests at once")
        self.retry_after_s = _retry_after_seconds(retry_after)

    @classmethod
    def from_reply(cls, status: int, headers: Mapping[str, str], message: str) -> "GatewayOverloaded | None":
        """The error for a shed reply, None for any other. Shed = 503 (the predictor's queue, the gateway's
        own admission limit) or 429, either with Retry-After: come back later, nothing failed."""
        retry_after = headers.get("retry-after")
        if status in (429, 503) and retry_after is not None:
            return cls(f"gateway answered HTTP {status}: {message}", retry_after)
        return None


def _retry_after_seconds(value: str) -> float:
    """Retry-After holds delay-seconds or an HTTP-date (RFC 9110 section 10.2.3); at least 1 s."""
    try:
        return max(1.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    if when.tzinfo is None:
        return 1.0
    return max(1.0, (when - datetime.now(timezone.utc)).total_seconds())


def gateway_refusal(status: int, message: str, hint: str | None = None) -> MlopsError:
    """The error for a gateway answer that is neither 200 nor shed load. The caller's own mistake cannot
    succeed on a retry, so it exits 2 like every usage error: wrong credentials (401) are a credential
    problem (PreflightError), a refused input (400, 413 text or batch too long, 422) a DataError.
    Anything else (a 5xx, a predictor not ready) is a runtime failure: 1."""
    if status == 401:
        return PreflightError(message, hint=hint or "check MLOPS_GATEWAY_USER / MLOPS_GATEWAY_PASSWORD")
    if status in (400, 413, 422):
        return DataError(message, hint=hint)
    return MlopsError(message, hint=hint)
