"""Is a server answering at a URL? Used by preflight checks so they fail in seconds, not minutes."""

from __future__ import annotations

import httpx


def reachable(url: str, timeout: float = 3.0, path: str = "") -> tuple[bool, str]:
    try:
        response = httpx.get(url.rstrip("/") + path, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        return False, f"unreachable ({type(exc).__name__}: {exc})"
    return True, f"HTTP {response.status_code}"
