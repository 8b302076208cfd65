"""Refused stream keys, counted per address: an address that guesses keys is refused
for a while without a lookup, and other addresses are not affected.

Invariants:
- After `limit` refusals within `window_s`, `blocked_for(client)` is positive for
  `block_s`; the count then starts again from zero. A limit of 0 never blocks.
- Memory is bounded: at most `max_tracked` addresses are remembered (the least
  recently refused are forgotten first), each with at most `limit` times.
- Time is the injected `clock` (monotonic seconds), so tests need not sleep.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

__all__ = ["RefusalThrottle"]

_V = TypeVar("_V")


class RefusalThrottle:
    def __init__(
        self,
        limit: int,
        window_s: float,
        block_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = 4096,
    ) -> None:
        self._limit = limit
        self._window_s = window_s
        self._block_s = block_s
        self._clock = clock
        self._max_tracked = max_tracked
        self._refusals: dict[str, deque[float]] = {}  # least recently refused first
        self._blocked_until: dict[str, float] = {}  # in the order blocks began

    def blocked_for(self, client: str) -> float:
        """Seconds before `client` may try a key again; 0.0 when it may now."""
        until = self._blocked_until.get(client)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._blocked_until[client]
            return 0.0
        return left

    def refused(self, client: str) -> bool:
        """Count a refused key from `client`; True when this refusal blocks it."""
        if self._limit <= 0:
            return False
        now = self._clock()
        times = self._refusals.pop(client, None) or deque(maxlen=self._limit)
        while times and times[0] <= now - self._window_s:
            times.popleft()
        times.append(now)
        if len(times) >= self._limit:
            self._block(client, now + self._block_s)
            return True
        self._refusals[client] = times  # re-inserted: now the most recently refused
        _forget_oldest(self._refusals, self._max_tracked)
        return False

    def _block(self, client: str, until: float) -> None:
        self._blocked_until.pop(client, None)
        self._blocked_until[client] = until
        _forget_oldest(self._blocked_until, self._max_tracked)


def _forget_oldest(table: dict[str, _V], size: int) -> None:
    """Drop the first-inserted entries until `table` has at most `size`."""
    while len(table) > size:
        del table[next(iter(table))]
