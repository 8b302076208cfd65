"""Admission control at the door of an API process: a bounded number of plain HTTP
requests in progress per replica; past it a request is answered at once with 503
`overloaded` and Retry-After, instead of queueing work whose client will have given up
by the time it is done (issue 12: offered 3x its capacity, the API keeps carrying its
capacity at a low p99 and sheds the rest).

The bound adapts (`AdaptiveLimit`), in the manner of Netflix's concurrency-limits: a
fixed cap is right for one machine and load only (a low one sheds the test suite's
bursts on a loaded 2-core box, a high one lets the queue, and the p99, grow without
bound on an overloaded one). It follows the latency the requests it admits measure,
per window of samples, and moves only on evidence about itself:
- the window was slow (median past `target_s` and past `tolerance` times the lowest
  latency seen lately) while the limit was reached: cut it (multiplicative, x0.9);
- fast while reached: probe upward (additive, + its square root);
- fast while not reached: the limit was not in play; return toward the ceiling
  quickly (x1.5), so one overload does not leave a low door behind it;
- slow while not reached: unchanged. The concurrency it bounds was not what made
  the window slow (a burst under the limit, a CPU taken by another process), and
  cutting it would only shed the next burst.
Under a sustained overload the limit is always reached, and this is AIMD: it settles
where the median latency is about `target_s`.

Invariants:
- `min_limit <= limit <= max_limit` always; `max_limit` is `LUMALIVE_API_MAX_INFLIGHT`
  (the old fixed cap is the ceiling), `min_limit` is `LUMALIVE_API_ADMISSION_MIN`. It
  starts at the ceiling: until latency says otherwise the door behaves as before.
- Latency never cuts the limit while a window's median is under `target_s` (an API
  that answers within it is not overloaded, however slow it is relative to idle), nor
  in a window where fewer than 90% of the limit were ever in progress at once.
- Deterministic: the limit is a function of the (latency, in-flight) samples fed to it,
  in order; no clock. Windows are counted in samples.

Not counted: WebSockets and SSE streams (long-lived; their own caps are in
`serve_app.limits` and `routes/realtime.py`), and `/healthz`, which must answer while
the replica is busy. LL-HLS blocking playlist reloads (`_HLS_msn`) are counted but not
sampled: they wait for the next part by design. A plain ASGI middleware, like
`serve_app.latency`: nothing is wrapped per request beyond a counter and a clock read.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import deque

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["AdaptiveLimit", "Admission", "OVERLOAD_RETRY_S"]

# A refused request is told to come back after this many seconds.
OVERLOAD_RETRY_S = 1
_BODY = json.dumps(
    {
        "error": {
            "code": "overloaded",
            "message": "the API is at capacity; retry after the Retry-After seconds",
        }
    }
).encode()
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
    (b"retry-after", str(OVERLOAD_RETRY_S).encode()),
]


class AdaptiveLimit:
    """A concurrency limit between `min_limit` and `max_limit` that follows latency.

    Feed it every admitted request's latency with `sample`; read `limit`. With
    `min_limit >= max_limit` it is a fixed cap of `max_limit`."""

    def __init__(
        self,
        max_limit: int,
        min_limit: int,
        *,
        window: int = 20,
        tolerance: float = 2.0,
        target_s: float = 0.1,
        backoff: float = 0.9,
        memory: int = 500,
    ) -> None:
        self.max_limit = max_limit
        self.min_limit = min(min_limit, max_limit) if min_limit > 0 else max_limit
        self.limit = float(max_limit)
        self.window = window
        self.tolerance = tolerance
        self.target_s = target_s
        self.backoff = backoff
        self._samples: list[float] = []
        self._peak_inflight = 0
        # The fastest sample of each of the last `memory` windows in which the limit
        # was not reached: the floor ("no-load latency"). It only ever raises the bar
        # above `target_s` (for a deployment whose fastest answers are slow); windows
        # at the limit never teach it, so a sustained overload cannot excuse itself.
        self._floors: deque[float] = deque(maxlen=memory)

    @property
    def floor_s(self) -> float | None:
        """The lowest latency seen in the remembered windows (None before the first)."""
        return min(self._floors) if self._floors else None

    def allows(self, inflight: int) -> bool:
        """Whether one more request may start with `inflight` already in progress."""
        return inflight < int(self.limit)

    def sample(self, latency_s: float, inflight: int) -> None:
        """One admitted request finished in `latency_s` with `inflight` in progress
        when it started (itself included). Every `window` samples the limit moves."""
        self._samples.append(latency_s)
        self._peak_inflight = max(self._peak_inflight, inflight)
        if len(self._samples) >= self.window:
            self._adjust(statistics.median(self._samples), min(self._samples))
            self._samples.clear()
            self._peak_inflight = 0

    def _adjust(self, median_s: float, fastest_s: float) -> None:
        slow = median_s > max(self.target_s, self.tolerance * (self.floor_s or 0.0))
        reached = self._peak_inflight >= 0.9 * int(self.limit)
        if not reached:  # only a window the door did not crowd says what no-load is
            self._floors.append(fastest_s)
        if slow and reached:
            self.limit *= self.backoff
        elif reached:
            self.limit += math.sqrt(self.limit)
        elif not slow:
            self.limit *= 1.5
        self.limit = min(float(self.max_limit), max(float(self.min_limit), self.limit))


def _exempt(path: str) -> bool:
    return path.endswith("/events/stream") or path == "/healthz"


class Admission:
    """At most `limit.limit` counted requests in progress; `max_inflight` 0: no cap.
    `min_inflight` 0 (or >= `max_inflight`): a fixed cap of `max_inflight`."""

    def __init__(self, app: ASGIApp, max_inflight: int, min_inflight: int = 0) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.limit = AdaptiveLimit(max_inflight, min_inflight)
        self.inflight = 0
        self.shed = 0  # requests refused so far (operators, tests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.max_inflight or _exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not self.limit.allows(self.inflight):
            self.shed += 1
            await send({"type": "http.response.start", "status": 503, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": _BODY})
            return
        self.inflight += 1
        inflight, started = self.inflight, time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
            if b"_HLS_msn" not in scope.get("query_string", b""):
                self.limit.sample(time.perf_counter() - started, inflight)
