"""Time windows: a duration such as '24h' and a start time such as '2026-11-26T08:00'.

Example::

    parse_duration("24h")                     # -> timedelta(days=1)
    parse_since("2026-11-26T08:00")           # -> 2026-11-26 08:00 UTC
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from .errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
# The longest duration accepted: a window is subtracted from now (datetime reaches back to year 1 only)
# and an interval becomes a wait (threading.TIMEOUT_MAX is about 292 years on Linux); past both,
# Python raises OverflowError. A century is longer than any window or interval anyone means.
MAX_DURATION_DAYS = 36500
MAX_DURATION_S = MAX_DURATION_DAYS * 86400


def duration_seconds(text: str) -> float:
    """'30m', '24h', '7d', '2w', '90s' -> seconds; ValueError (what pydantic reports) when it is not one."""
    match = _DURATION.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"invalid duration {text!r}: expected a positive number and a unit (s, m, h, d, w), "
                         "e.g. 30m, 24h or 7d")
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds > MAX_DURATION_S:
        raise ValueError(f"invalid duration {text!r}: at most {MAX_DURATION_DAYS}d (100 years)")
    return seconds


def parse_duration(text: str, what: str = "window") -> timedelta:
    """'30m', '24h', '7d', '2w', '90s' -> timedelta; a ConfigError naming `what` when it is not one."""
    try:
        return timedelta(seconds=duration_seconds(text))
    except ValueError as exc:
        reason = str(exc).partition(": ")[2]
        raise ConfigError(f"invalid {what} {text!r}: {reason}", hint="e.g. 30m, 24h or 7d") from None


def parse_since(text: str) -> datetime:
    """An ISO 8601 time ('2026-11-26T08:00', '2026-11-26T08:00:00+01:00'); no offset means UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"invalid --since {text!r}: not an ISO 8601 time",
                          hint="e.g. --since 2026-11-26T08:00 (UTC) or --since 2026-11-26T08:00+01:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
