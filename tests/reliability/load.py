"""A bounded loopback load generator: N clients, each stopping at a request count or a deadline."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Sample:
    start: float          # time.monotonic() when sent
    latency: float
    status: int           # 0: no HTTP answer (connection refused, reset, client timeout)
    version: str = ""
    error: str = ""
    retry_after: str | None = None


@dataclass
class Load:
    url: str
    auth: tuple[str, str]
    clients: int = 4
    max_requests: int = 3000      # all clients together
    max_seconds: float = 60.0
    timeout_s: float = 10.0
    pause_s: float = 0.01         # between one client's requests: a steady rate, not a CPU burner
    body: dict = field(default_factory=lambda: {"text": "this drug worked well for me"})
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "Load":
        self._deadline = time.monotonic() + self.max_seconds
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout_s + 5)

    def _client(self) -> None:
        with httpx.Client(timeout=self.timeout_s, auth=self.auth) as client:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                with self._lock:
                    if len(self.samples) >= self.max_requests:
                        return
                start = time.monotonic()
                try:
                    r = client.post(self.url, json=self.body)
                    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                    sample = Sample(start, time.monotonic() - start, r.status_code,
                                    str(body.get("model_version", "")) if r.status_code == 200 else "",
                                    "" if r.status_code == 200 else str(body.get("error", {}).get("code", r.text[:80])),
                                    r.headers.get("retry-after"))
                except httpx.HTTPError as exc:
                    sample = Sample(start, time.monotonic() - start, 0, error=type(exc).__name__)
                except (ValueError, AttributeError, TypeError) as exc:  # an answer that is not our JSON shape
                    sample = Sample(start, time.monotonic() - start, -1, error=f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.samples.append(sample)
                time.sleep(self.pause_s)

    def wait_for(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(list(self.samples)):
                    return True
            time.sleep(0.1)
        return False

    def failures(self, after: float = 0.0) -> list[Sample]:
        return [s for s in self.samples if s.start >= after and s.status != 200]
