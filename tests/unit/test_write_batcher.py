"""Group commit (`actors.write_batcher.WriteBatcher`) on an in-memory transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from actors.write_batcher import WriteBatcher


class Conn:
    """What one transaction wrote, and as whom."""

    def __init__(self) -> None:
        self.actor: uuid.UUID | None = None
        self.rows: list[tuple[uuid.UUID | None, str]] = []


class FakeDatabase:
    """Transactions that commit on a clean exit and roll back when the block raises."""

    def __init__(self) -> None:
        self.committed: list[tuple[uuid.UUID | None, str]] = []
        self.transactions = 0
        self.rollbacks = 0

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Conn]:
        conn = Conn()
        self.transactions += 1
        try:
            yield conn
        except BaseException:
            self.rollbacks += 1
            raise
        await asyncio.sleep(0)  # the commit's round trip
        self.committed.extend(conn.rows)

    @staticmethod
    async def act_as(conn: Conn, user: uuid.UUID | None) -> None:
        conn.actor = user


def batcher(db: FakeDatabase) -> WriteBatcher:
    return WriteBatcher(db.begin, act_as=db.act_as)  # type: ignore[arg-type]


def write(db: FakeDatabase, value: str, *, fail: bool = False) -> Any:
    async def op(conn: Conn) -> str:
        conn.rows.append((conn.actor, value))
        if fail:
            raise ValueError(f"bad write {value}")
        return value.upper()

    return op


async def test_an_acknowledged_write_is_committed_as_its_user() -> None:
    db = FakeDatabase()
    user = uuid.uuid4()
    assert await batcher(db).submit(user, write(db, "a")) == "A"
    assert db.committed == [(user, "a")]


async def test_writes_queued_during_a_transaction_share_the_next_one() -> None:
    db = FakeDatabase()
    writes = batcher(db)
    users = [uuid.uuid4() for _ in range(5)]
    results = await asyncio.gather(
        *(writes.submit(u, write(db, f"w{i}")) for i, u in enumerate(users))
    )
    assert results == [f"W{i}" for i in range(5)]
    assert db.committed == [(u, f"w{i}") for i, u in enumerate(users)]  # each as its own user
    assert db.transactions == writes.batches < 5
    assert writes.writes == 5


async def test_a_failing_batch_is_retried_item_by_item_so_one_bad_write_fails_alone() -> None:
    db = FakeDatabase()
    writes = batcher(db)
    submitted = [
        writes.submit(None, write(db, "good1")),
        writes.submit(None, write(db, "bad", fail=True)),
        writes.submit(None, write(db, "good2")),
    ]
    results = await asyncio.gather(*submitted, return_exceptions=True)
    assert results[0] == "GOOD1" and results[2] == "GOOD2"
    assert isinstance(results[1], ValueError)
    # The failed batch was rolled back; each good write committed exactly once.
    assert db.committed == [(None, "good1"), (None, "good2")]
    assert db.rollbacks == 2  # the whole batch, then the bad write alone
    assert writes.writes == 2


async def test_a_lone_failing_write_raises_to_its_caller() -> None:
    db = FakeDatabase()
    with pytest.raises(ValueError, match="bad write x"):
        await batcher(db).submit(None, write(db, "x", fail=True))
    assert db.committed == []


async def test_a_caller_that_went_away_does_not_stop_the_others() -> None:
    db = FakeDatabase()
    writes = batcher(db)
    gone = asyncio.ensure_future(writes.submit(None, write(db, "gone")))
    kept = asyncio.ensure_future(writes.submit(None, write(db, "kept")))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == "KEPT"
    assert (None, "kept") in db.committed
