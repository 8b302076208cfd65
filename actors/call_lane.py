"""Many callers' calls of one kind to one actor, sent as few actor calls.

A chat message costs a Ray call each way (arguments pickled, a task scheduled, the
result pickled back) on top of its write. A lane sends whatever calls arrived while
its previous batches were in flight as one call (`send(items)` → one result per
item), so under load a replica makes one actor call per batch, not per message;
when idle a call goes at once (no added latency). At most `max_inflight` batches are
in flight, so the actor writes one batch while the next one forms.

Admission: at most `max_queued` calls wait in a lane (0: no bound); past that a call
is refused at once with 429 `stream_busy` and Retry-After, before it costs anything.

Results: an item's result that is an `Exception` is raised to that item's caller
only (the others may be committed: they are acknowledged); if the whole `send`
fails, every caller of that batch gets its error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from actors.futures import settle
from lumalive.errors import RateLimited

__all__ = ["CallLane", "BUSY_RETRY_S"]

# A caller refused because the lane is full is told to retry after this long.
BUSY_RETRY_S = 1.0

Send = Callable[[list[Any]], Awaitable[list[Any]]]


class CallLane:
    def __init__(self, send: Send, *, max_inflight: int = 2, max_queued: int = 0) -> None:
        self._send = send
        self._max_inflight = max_inflight
        self._max_queued = max_queued
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self._inflight = 0
        self.calls = 0  # actor calls made (for tests and operators)

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def call(self, item: Any) -> Any:
        """Send `item` with the next batch; its result, or the error that refused it."""
        if self._max_queued and len(self._queue) >= self._max_queued:
            raise RateLimited(
                "this stream has more messages waiting than it can take; retry",
                BUSY_RETRY_S,
                "stream_busy",
            )
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if self._inflight < self._max_inflight:
            self._launch()
        return await fut

    def _launch(self) -> None:
        batch, self._queue = self._queue, []
        self._inflight += 1
        self.calls += 1
        asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - the whole call failed: every caller hears
            for _, fut in batch:
                settle(fut, exc=exc)
        else:
            for (_, fut), result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    settle(fut, exc=result)
                else:
                    settle(fut, result=result)
        finally:
            self._inflight -= 1
            if self._queue:
                self._launch()
