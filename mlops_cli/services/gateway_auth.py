"""Basic auth for the gateway: bcrypt htpasswd users or one user from the environment."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from pathlib import Path

from ..common.errors import ConfigError, PreflightError


class BasicAuth:
    """Checks `Authorization: Basic …` headers in constant time."""

    realm = "mlops"

    def __init__(self, users: dict[str, bytes | str]) -> None:
        # value: a bcrypt hash (bytes, from htpasswd) or a plain password (str, from the environment)
        self._users = users
        # bcrypt costs tens of ms of CPU on purpose; a client sends the same header on every request, so a
        # header that passed once is remembered (by its SHA-256, bounded) instead of re-hashed each time.
        self._verified: dict[bytes, str] = {}

    @classmethod
    def from_settings(cls, htpasswd_file: str | Path | None, user: str | None, password: str | None) -> "BasicAuth":
        if htpasswd_file:
            return cls(read_htpasswd(Path(htpasswd_file)))
        if not (user and password):
            raise PreflightError(
                "the gateway needs credentials: basic auth is on but no password is set",
                hint="set MLOPS_GATEWAY_PASSWORD (and MLOPS_GATEWAY_USER), or [gateway].htpasswd_file",
            )
        return cls({user: password})

    def check(self, header: str | None) -> str | None:
        """The authenticated user name, or None."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        expected = self._users.get(user)
        # Compare against a dummy when the user is unknown, so timing does not reveal which users exist.
        if expected is None:
            hmac.compare_digest(password.encode(), b"x" * len(password.encode()))
            return None
        if isinstance(expected, bytes):
            import bcrypt

            key = hashlib.sha256(header.encode()).digest()
            if self._verified.get(key) == user:
                return user
            if not bcrypt.checkpw(password.encode(), expected):
                return None
            if len(self._verified) >= 1024:
                self._verified.clear()
            self._verified[key] = user
            return user
        return user if hmac.compare_digest(password.encode(), expected.encode()) else None


def read_htpasswd(path: Path) -> dict[str, bytes | str]:
    if not path.is_file():
        raise ConfigError(f"htpasswd file not found: {path}", hint="fix [gateway].htpasswd_file")
    users: dict[str, bytes | str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, digest = line.partition(":")
        if not sep or not digest.startswith(("$2y$", "$2b$", "$2a$")):
            raise ConfigError(f"{path}:{number}: expected `user:<bcrypt hash>`",
                              hint="create entries with `htpasswd -B` (bcrypt)")
        # Apache writes $2y$; the bcrypt library checks the same algorithm under $2b$.
        users[user] = ("$2b$" + digest[4:]).encode() if digest.startswith("$2y$") else digest.encode()
    if not users:
        raise ConfigError(f"{path}: no users")
    return users
