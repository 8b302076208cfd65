"""Per-key token buckets. Each user runs them on one event loop (a stream actor, an API
replica) and `take` never awaits, so no locking."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

__all__ = ["RateLimiter"]


class RateLimiter:
    """`rate` tokens a second, up to `burst` saved.

    At most `max_keys` buckets are kept: past that, the buckets that have refilled
    (which behave exactly like absent ones) are dropped, and if every bucket is still
    in use, all are, which at worst hands each key a fresh burst once.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def take(self, key: Hashable) -> float:
        """Take a token for `key`: 0.0 if allowed, else seconds until one is available."""
        now = self._clock()
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            self._prune(now)
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self._rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        # A bucket is full again once (burst - tokens) / rate seconds have passed.
        self._buckets = {
            k: (tokens, last)
            for k, (tokens, last) in self._buckets.items()
            if now - last < (self._burst - tokens) / self._rate
        }
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()
