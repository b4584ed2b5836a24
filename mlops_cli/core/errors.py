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
    """The serving path shed the request (HTTP 503 with Retry-After): retry after that many seconds."""

    def __init__(self, message: str, retry_after: str) -> None:
        super().__init__(message, hint="the platform is at capacity: retry later, or send fewer requests at once")
        try:
            self.retry_after_s = max(1.0, float(retry_after))
        except ValueError:
            self.retry_after_s = 1.0
