"""Per-replica rate limits on what users do, and caps on their open realtime connections.

Both live in the memory of one API replica (no round trip per request): with N
replicas a user may get up to N times a rate or cap, since Serve spreads one
user's requests over them. The quotas that must hold across replicas (live
streams, streams created per hour) are counted in Postgres (`lumalive.quotas`).
Every refusal is a 429 with Retry-After.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal
from uuid import UUID

from actors.rate_limit import RateLimiter
from lumalive.errors import RateLimited
from lumalive.settings import Settings

__all__ = ["Action", "RequestLimits", "ConnectionLimits", "CONNECTION_RETRY_S"]

# What is rate-limited per user: creating a stream, starting one, joining or leaving
# (one bucket for both), friend requests and accepts, reports.
Action = Literal["create", "start", "join", "friend", "report"]
_NOUNS: dict[Action, str] = {
    "create": "streams created",
    "start": "streams started",
    "join": "joins and leaves",
    "friend": "friend requests",
    "report": "reports",
}
# A refused connection is told to retry after this long (another may close meanwhile).
CONNECTION_RETRY_S = 5.0


class RequestLimits:
    """A token bucket per user and action, sized by the settings' `*_rate_per_s`/`*_burst`."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        s = settings
        sizes: dict[Action, tuple[float, int]] = {
            "create": (s.stream_rate_per_s, s.stream_burst),
            "start": (s.stream_rate_per_s, s.stream_burst),
            "join": (s.join_rate_per_s, s.join_burst),
            "friend": (s.friend_rate_per_s, s.friend_burst),
            "report": (s.report_rate_per_s, s.report_burst),
        }
        self._buckets = {a: RateLimiter(rate, burst, clock) for a, (rate, burst) in sizes.items()}

    def take(self, action: Action, user: UUID) -> None:
        """Count one `action` by `user`; RateLimited (429) if their bucket is empty."""
        wait = self._buckets[action].take(user)
        if wait > 0:
            raise RateLimited(f"too many {_NOUNS[action]}; retry in {math.ceil(wait)} s", wait)


class ConnectionLimits:
    """Open SSE/WebSocket connections per client: a user by id, an anonymous caller by
    IP address. A cap of 0 means no cap."""

    def __init__(self, per_user: int, per_ip: int) -> None:
        self._per_user = per_user
        self._per_ip = per_ip
        self._open: dict[UUID | str, int] = {}

    def open(self, user: UUID | None, ip: str | None) -> Callable[[], None]:
        """Count a new connection; returns the function that counts it closed (call it
        exactly once). RateLimited `too_many_connections` if the client is at its cap."""
        key = _client_key(user, ip)
        cap = self._per_user if user is not None else self._per_ip
        held = self._open.get(key, 0)
        if cap and held >= cap:
            who = "this user" if user is not None else "this address"
            raise RateLimited(
                f"{who} already holds {held} live connections (at most {cap}); close one",
                CONNECTION_RETRY_S,
                "too_many_connections",
            )
        self._open[key] = held + 1
        closed = False

        def close() -> None:
            nonlocal closed
            if closed:
                return
            closed = True
            left = self._open.get(key, 1) - 1
            if left > 0:
                self._open[key] = left
            else:
                self._open.pop(key, None)

        return close

    def held(self, user: UUID | None, ip: str | None = None) -> int:
        return self._open.get(_client_key(user, ip), 0)


def _client_key(user: UUID | None, ip: str | None) -> UUID | str:
    """A signed-in client is its user id; an anonymous one its address."""
    return user if user is not None else f"ip:{ip or 'unknown'}"
