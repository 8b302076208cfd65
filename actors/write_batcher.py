"""Group commit for a stream actor's writes.

Callers submit an operation and wait; whatever has queued up while the
previous transaction ran is written in the next one. Under light traffic a
batch is one write; under heavy traffic batches grow, so throughput rises
without delaying anyone. An acknowledgement means committed. If a batch fails,
each of its operations is retried alone so one bad write cannot sink others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from lumalive.db import Database, set_actor

__all__ = ["WriteBatcher", "Operation"]

Operation = Callable[[AsyncConnection], Awaitable[Any]]
_Item = tuple[UUID | None, Operation, asyncio.Future]


class WriteBatcher:
    def __init__(self, db: Database, max_batch: int = 256) -> None:
        self._db = db
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.writes = 0

    async def submit(self, acting_user: UUID | None, op: Operation) -> Any:
        """Run `op` in a transaction acting as `acting_user`; return once committed."""
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((acting_user, op, fut))
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
                _settle(batch[0][2], exc=exc)
                return
            for item in batch:  # isolate the failing write
                await self._write([item])
            return
        for (_, _, fut), result in zip(batch, results, strict=True):
            _settle(fut, result=result)

    async def _transaction(self, batch: list[_Item]) -> list[Any]:
        results = []
        async with self._db.engine.begin() as conn:
            for user, op, _ in batch:
                await set_actor(conn, user)
                results.append(await op(conn))
        self.batches += 1
        self.writes += len(batch)
        return results


def _settle(fut: asyncio.Future, result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():  # the caller went away
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
