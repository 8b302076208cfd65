"""Group commit for a stream actor's writes.

Callers submit an operation and wait; whatever has queued up while the
previous transaction ran is written in the next one. Under light traffic a
batch is one write; under heavy traffic batches grow, so throughput rises
without delaying anyone. An acknowledgement means committed. If a batch fails,
each of its operations is retried alone so one bad write cannot sink others.

The transaction comes from `begin` (with Postgres: `Database.engine.begin`), and
`act_as` names each operation's acting user inside it (`lumalive.db.set_actor`).

A `Bulk` writer takes many payloads in one call (sql/0014: a batch of chat messages
and their events in one round trip; it names each row's acting user itself). Items
submitted to the same `Bulk` that are adjacent in a batch go in one call, so the
order of writes is the order of submission, whatever their kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from actors.futures import settle
from lumalive.db import set_actor

__all__ = ["WriteBatcher", "Operation", "Begin", "ActAs", "Bulk"]

Operation = Callable[[AsyncConnection], Awaitable[Any]]
# A transaction: commits when the block exits normally, rolls back when it raises.
Begin = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
ActAs = Callable[[AsyncConnection, UUID | None], Awaitable[None]]
P = TypeVar("P")


class Bulk(Generic[P]):
    """A writer of many payloads in one call: `write(conn, payloads)` returns one
    result per payload, in order."""

    def __init__(self, write: Callable[[AsyncConnection, list[P]], Awaitable[list[Any]]]) -> None:
        self.write = write


# (acting user, operation or bulk writer, the bulk payload, the caller's future)
_Item = tuple[UUID | None, "Operation | Bulk[Any]", Any, "asyncio.Future[Any]"]


class WriteBatcher:
    def __init__(self, begin: Begin, *, act_as: ActAs = set_actor, max_batch: int = 256) -> None:
        self._begin = begin
        self._act_as = act_as
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.writes = 0

    async def submit(self, acting_user: UUID | None, op: Operation) -> Any:
        """Run `op` in a transaction acting as `acting_user`; return once committed."""
        return await self._enqueue((acting_user, op, None))

    async def submit_bulk(self, bulk: Bulk[P], payload: P) -> Any:
        """Write `payload` with `bulk`, together with its neighbours in the batch."""
        return await self._enqueue((None, bulk, payload))

    @property
    def pending(self) -> int:
        """Writes waiting for a transaction (the one running not counted)."""
        return self._queue.qsize()

    async def _enqueue(self, item: tuple[UUID | None, Operation | Bulk[Any], Any]) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((*item, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[_Item]) -> None:
        try:
            results = await self._transaction(batch)
        except Exception as exc:
            if len(batch) == 1:
                settle(batch[0][3], exc=exc)
                return
            for item in batch:  # isolate the failing write
                await self._write([item])
            return
        for (_, _, _, fut), result in zip(batch, results, strict=True):
            settle(fut, result=result)

    async def _transaction(self, batch: list[_Item]) -> list[Any]:
        results: list[Any] = []
        async with self._begin() as conn:
            i = 0
            while i < len(batch):
                user, op, _, _ = batch[i]
                if isinstance(op, Bulk):
                    j = i + 1
                    while j < len(batch) and batch[j][1] is op:
                        j += 1
                    results.extend(await op.write(conn, [item[2] for item in batch[i:j]]))
                    i = j
                    continue
                await self._act_as(conn, user)
                results.append(await op(conn))
                i += 1
        self.batches += 1
        self.writes += len(batch)
        return results
