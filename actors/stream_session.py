"""The logic of one live stream: lifecycle, viewers, chat and reactions.

A stream has exactly one `StreamSession` (inside its Ray actor), so every
write for the stream has a single writer and counters cannot race. Writes go
through the session's `StreamStore` (Postgres, group-committed): a call returns
only after its rows are committed. In-memory state (who is watching, rate-limit
buckets) is a cache of Postgres and is rebuilt from it when the actor restarts.

Admission: at most `stream_max_pending_writes` chat messages and reactions wait for
their transaction at once; past that a write is refused at once with 429
`stream_busy` (Retry-After), instead of queueing work whose client may give up.
`chat_many`/`react_many` take a replica's batch in one actor call and answer one
result per item, a refusal (`LumaError`) in place of a row where it failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from actors.rate_limit import RateLimiter
from actors.stream_store import PostgresStreamStore, StreamStore
from lumalive import metrics
from lumalive.db import Database, as_unavailable
from lumalive.errors import Conflict, LumaError, RateLimited
from lumalive.settings import Settings
from lumalive.status import StreamStatus

__all__ = ["StreamSession", "STREAM_BUSY_RETRY_S"]

# A write refused because the stream's queue is full is told to retry after this long.
STREAM_BUSY_RETRY_S = 1.0
# One item of `chat_many`: (user, message, moderation score, moderated).
ChatItem = tuple[UUID, str, float, bool]


class StreamSession:
    def __init__(
        self,
        stream_id: UUID,
        owner_id: UUID,
        settings: Settings,
        store: StreamStore | None = None,
    ) -> None:
        """`store` defaults to Postgres, with this process's one engine (made here,
        inside the actor: engines never travel through `.remote()`)."""
        self.stream_id = stream_id
        self.owner_id = owner_id
        self._store: StreamStore = store or PostgresStreamStore(
            stream_id, owner_id, Database(settings, pool_size=2)
        )
        self._chat_limit = RateLimiter(settings.chat_rate_per_s, settings.chat_burst)
        self._reaction_limit = RateLimiter(settings.reaction_rate_per_s, settings.reaction_burst)
        self._max_pending = settings.stream_max_pending_writes
        self._pending = 0  # chat messages and reactions not yet committed
        self._viewers: set[UUID] | None = None
        self._status: str | None = None
        self._load_lock = asyncio.Lock()

    async def _load(self) -> None:
        """Status and current viewers from Postgres: on first use and after a restart."""
        async with self._load_lock:
            if self._viewers is None:
                self._status, self._viewers = await self._store.load()
                self._report()

    async def _watching(self) -> set[UUID]:
        """Current viewers of a live stream; Conflict once it is not live (a stale
        caller may reach an actor that outlived its stream)."""
        if self._viewers is None:
            await self._load()
        if self._status != StreamStatus.LIVE:
            raise Conflict(f"stream is {self._status}, not live", "stream_not_live")
        assert self._viewers is not None
        return self._viewers

    async def start(self) -> dict[str, Any]:
        """created → live. Conflict if the stream is not in `created`."""
        row = await self._store.start()
        if row is None:
            raise Conflict(
                "stream can only be started once, from the created state", "invalid_transition"
            )
        self._viewers, self._status = set(), StreamStatus.LIVE
        self._report()
        return row

    async def end(self, reason: str = "ended_by_owner") -> dict[str, Any]:
        """live → ended; the database closes every open viewing and sets the duration."""
        row = await self._store.end(reason)
        if row is None:
            raise Conflict("stream is not live", "stream_not_live")
        self._viewers, self._status = set(), StreamStatus.ENDED
        self._report()
        return row

    async def join(self, user_id: UUID) -> dict[str, Any]:
        """Idempotent: joining twice counts once."""
        watching = await self._watching()
        if user_id not in watching:
            await self._store.join(user_id)
            watching.add(user_id)
            self._report()
        return {"joined": True, "viewers": len(watching)}

    async def leave(self, user_id: UUID) -> dict[str, Any]:
        """Idempotent: leaving when not watching changes nothing."""
        watching = await self._watching()
        duration = None
        if user_id in watching:
            duration = await self._store.leave(user_id)
            watching.discard(user_id)
            self._report()
        return {"left": duration is not None, "watch_duration": duration, "viewers": len(watching)}

    async def chat(
        self, user_id: UUID, message: str, score: float, moderated: bool
    ) -> dict[str, Any]:
        """Store a message (moderated ones hidden from others) and its event."""
        await self._watching()
        self._check_rate(self._chat_limit, user_id, "chat")
        row = await self._admitted(lambda: self._store.chat(user_id, message, score, moderated))
        metrics.chat_messages().inc()
        if moderated:
            metrics.moderated_messages().inc()
        return row

    async def react(self, user_id: UUID, reaction: str) -> dict[str, Any]:
        await self._watching()
        self._check_rate(self._reaction_limit, user_id, "reaction")
        return await self._admitted(lambda: self._store.react(user_id, reaction))

    async def chat_many(self, items: list[ChatItem]) -> list[dict[str, Any] | Exception]:
        """`chat` for each item, written together (one batch); per item its row or
        the domain error that refused it."""
        return await _each([self.chat(*item) for item in items])

    async def react_many(self, items: list[tuple[UUID, str]]) -> list[dict[str, Any] | Exception]:
        """`react` for each item, like `chat_many`."""
        return await _each([self.react(*item) for item in items])

    async def _admitted(self, write: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Run `write` unless too many are waiting already (429 `stream_busy`)."""
        if self._max_pending and self._pending >= self._max_pending:
            raise RateLimited(
                "this stream has more messages waiting than it can write; retry",
                STREAM_BUSY_RETRY_S,
                "stream_busy",
            )
        self._pending += 1
        try:
            return await write()
        finally:
            self._pending -= 1

    async def stats(self) -> dict[str, Any]:
        """In-memory view, for operators and tests."""
        return {
            "viewers": len(await self._watching()),
            "batches": self._store.batches,
            "writes": self._store.writes,
        }

    def _report(self) -> None:
        """Operator gauges of this actor (summed over actors: live streams, viewers)."""
        metrics.live_streams().set(1 if self._status == StreamStatus.LIVE else 0)
        metrics.stream_viewers().set(
            len(self._viewers or ()) if self._status == StreamStatus.LIVE else 0
        )

    @staticmethod
    def _check_rate(limiter: RateLimiter, user_id: UUID, what: str) -> None:
        wait = limiter.take(user_id)
        if wait:
            raise RateLimited(f"too many {what} messages; retry in {wait:.1f} s", wait)


async def _each(calls: list[Awaitable[dict[str, Any]]]) -> list[dict[str, Any] | Exception]:
    """Await all at once (so their writes share a transaction); what refused an item
    comes back in its place (a database fault as its 503), never sinking the others:
    they may be committed, and must be acknowledged as such."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    out: list[dict[str, Any] | Exception] = []
    for result in results:
        if not isinstance(result, Exception) and isinstance(result, BaseException):
            raise result  # cancelled: the actor is going away
        if isinstance(result, Exception) and not isinstance(result, LumaError):
            # A database fault is its 503; anything else (a policy that refused the row)
            # is reported as the plain error it is (a 500, as a single write's would be).
            result = as_unavailable(result) or RuntimeError(f"{type(result).__name__}: {result}")
        out.append(result)
    return out
