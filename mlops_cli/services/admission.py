"""The gateway's admission limit: refuse at once what could not be answered within the latency budget.

Little's law: a request admitted now waits about (requests in flight) / (completions per second). When
that passes the budget, or the hard cap on requests in flight is reached, the gateway answers 503 with
`Retry-After` before doing any work, which costs it a fraction of a millisecond, instead of queueing the
request where its latency grows without bound. The completion rate is measured over the last `window_s`
seconds, so a CPU-starved machine (fewer completions) admits fewer requests. It is trusted only after
the gateway has had requests in flight for a whole window: after an idle spell the window's completions
say how little was asked, not how much can be served, and only the hard cap applies. Shedding at the
predictor's own queue stays: it sees time in passes that the gateway does not.

    admission = Admission(max_in_flight=128, budget_s=2.0)
    retry_after = admission.try_enter()       # None: admitted; else whole seconds to wait
    ...
    admission.leave()
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable

# Below this many requests in flight nobody is refused on the rate estimate: a lone request after an
# idle spell (no recent completions, so no rate yet) always goes through.
MIN_IN_FLIGHT = 4


class Admission:
    def __init__(self, max_in_flight: int, budget_s: float, window_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_in_flight = max_in_flight
        self.budget_s = budget_s
        self.window_s = window_s
        self.in_flight = 0
        self.shed = 0
        self._clock = clock
        self._completions: deque[float] = deque()
        self._busy_since: float | None = None  # since when requests have been in flight without a break

    def rate(self) -> float:
        """Completions per second over the last window (0 when there were none)."""
        now = self._clock()
        while self._completions and now - self._completions[0] > self.window_s:
            self._completions.popleft()
        return len(self._completions) / self.window_s

    def expected_wait_s(self) -> float | None:
        """Seconds a request admitted now should take, or None while no trustworthy rate is known."""
        if self._busy_since is None or self._clock() - self._busy_since < self.window_s:
            return None
        rate = self.rate()
        return (self.in_flight + 1) / rate if rate else None

    def try_enter(self) -> int | None:
        """None when admitted (call `leave` when done); else the Retry-After seconds of the refusal."""
        if self.in_flight >= self.max_in_flight:
            return self._refuse()
        if self.in_flight >= MIN_IN_FLIGHT:
            wait = self.expected_wait_s()
            if wait is not None and wait > self.budget_s:
                return self._refuse(wait)
        if self.in_flight == 0:
            self._busy_since = self._clock()
        self.in_flight += 1
        return None

    def leave(self) -> None:
        self.in_flight -= 1
        self._completions.append(self._clock())
        if self.in_flight == 0:
            self._busy_since = None

    def _refuse(self, wait: float | None = None) -> int:
        self.shed += 1
        wait = self.expected_wait_s() if wait is None else wait
        # Whole seconds (RFC 9110 delay-seconds): about when the work ahead should be done.
        return max(1, math.ceil(wait - self.budget_s)) if wait else 1
