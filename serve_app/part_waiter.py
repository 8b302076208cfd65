"""Blocking playlist reloads (LL-HLS `_HLS_msn`/`_HLS_part`) answered the moment a part
is published, on any API replica.

The live encoder's part inserts send `NOTIFY lumalive_llhls '<stream_id>'` on commit
(sql/0012). Each replica holds one LISTEN connection, opened by the first waiting
request; a request re-reads Postgres when its stream is notified, until what it waits
for is there or its time is up.

Invariants:
- No lost wake-up: a request takes its stream's event before it checks, and a
  notification sets (and retires) the event it replaces, so one that lands between
  the check and the wait still wakes it.
- A dropped LISTEN connection costs latency, not correctness: a waiting request
  re-checks at least every `_RECHECK_S` on its own, and the connection reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from uuid import UUID

from lumalive.store.llhls import CHANNEL
from serve_app.pg_listener import listen_forever

__all__ = ["PartWaiter"]

log = logging.getLogger(__name__)

_RECHECK_S = 1.0


class PartWaiter:
    def __init__(self, database_url: str, *, role: str = "lumalive_app") -> None:
        # SQLAlchemy URL -> libpq URL for the raw psycopg listener.
        self._dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._role = role
        self._events: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def wait_for(
        self, stream_id: UUID, ready: Callable[[], Awaitable[bool]], timeout_s: float
    ) -> bool:
        """Wait until `ready()` (re-checked on each notification of the stream) is true;
        False if `timeout_s` passed first."""
        await self._start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        sid = str(stream_id)
        while True:
            event = self._events.setdefault(sid, asyncio.Event())
            if await ready():
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, _RECHECK_S)):
                    await event.wait()

    async def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen())
        with contextlib.suppress(TimeoutError):  # not listening yet: polling still works
            async with asyncio.timeout(5):
                await self._listening.wait()

    def _on_notify(self, payload: str) -> None:
        event = self._events.pop(payload, None)
        if event is not None:
            event.set()

    async def _listen(self) -> None:
        await listen_forever(
            self._dsn, self._role, CHANNEL, self._on_notify, self._on_listening, log, "LL-HLS"
        )

    def _on_listening(self) -> None:
        self._listening.set()
        for event in self._events.values():  # a reconnect: re-check everything
            event.set()
        self._events.clear()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
