"""A stream's logic (`actors.stream_session.StreamSession`) on an in-memory store."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from actors.stream_session import StreamSession
from lumalive.errors import Conflict, RateLimited
from lumalive.settings import Settings
from lumalive.status import StreamStatus


class MemoryStore:
    """`StreamStore` in memory: what a restarted actor would find in Postgres."""

    def __init__(self, status: str = StreamStatus.CREATED, viewers: set[UUID] | None = None):
        self.status = status
        self.viewers = set(viewers or ())
        self.chat_rows: list[dict[str, Any]] = []
        self.reactions: list[tuple[UUID, str]] = []
        self.calls: list[str] = []
        self.batches = self.writes = 0

    def _wrote(self, what: str) -> None:
        self.calls.append(what)
        self.batches += 1
        self.writes += 1

    async def load(self) -> tuple[str, set[UUID]]:
        self.calls.append("load")
        return self.status, set(self.viewers)

    async def start(self) -> dict[str, Any] | None:
        self._wrote("start")
        if self.status != StreamStatus.CREATED:
            return None
        self.status = StreamStatus.LIVE
        return {"status": self.status}

    async def end(self, reason: str) -> dict[str, Any] | None:
        self._wrote("end")
        if self.status != StreamStatus.LIVE:
            return None
        self.status, self.viewers = StreamStatus.ENDED, set()
        return {"status": self.status, "ended_reason": reason}

    async def join(self, user_id: UUID) -> bool:
        self._wrote("join")
        added = user_id not in self.viewers
        self.viewers.add(user_id)
        return added

    async def leave(self, user_id: UUID) -> int | None:
        self._wrote("leave")
        if user_id not in self.viewers:
            return None
        self.viewers.discard(user_id)
        return 42

    async def chat(
        self, user_id: UUID, message: str, score: float, moderated: bool
    ) -> dict[str, Any]:
        self._wrote("chat")
        row = {"user_id": user_id, "message": message, "is_moderated": moderated}
        self.chat_rows.append(row)
        return row

    async def react(self, user_id: UUID, reaction: str) -> dict[str, Any]:
        self._wrote("react")
        self.reactions.append((user_id, reaction))
        return {"user_id": user_id, "reaction": reaction}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, chat_burst=3, reaction_burst=2)


def session(settings: Settings, store: MemoryStore) -> StreamSession:
    return StreamSession(uuid.uuid4(), uuid.uuid4(), settings, store=store)


async def test_start_then_end_walks_the_lifecycle_once(settings: Settings) -> None:
    store = MemoryStore()
    s = session(settings, store)
    assert (await s.start())["status"] == StreamStatus.LIVE
    with pytest.raises(Conflict) as exc:
        await s.start()
    assert exc.value.code == "invalid_transition"
    assert (await s.end("ended_by_owner"))["ended_reason"] == "ended_by_owner"
    with pytest.raises(Conflict) as exc:
        await s.end()
    assert exc.value.code == "stream_not_live"


async def test_join_and_leave_are_idempotent(settings: Settings) -> None:
    store = MemoryStore(StreamStatus.LIVE)
    s = session(settings, store)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    assert await s.join(alice) == {"joined": True, "viewers": 1}
    assert await s.join(alice) == {"joined": True, "viewers": 1}
    assert await s.join(bob) == {"joined": True, "viewers": 2}
    assert store.calls.count("join") == 2  # the second join of alice wrote nothing
    assert await s.leave(alice) == {"left": True, "watch_duration": 42, "viewers": 1}
    assert await s.leave(alice) == {"left": False, "watch_duration": None, "viewers": 1}
    assert store.calls.count("leave") == 1
    assert (await s.stats())["viewers"] == 1


async def test_a_restarted_actor_rebuilds_its_viewers_from_the_store(settings: Settings) -> None:
    watching = {uuid.uuid4(), uuid.uuid4()}
    store = MemoryStore(StreamStatus.LIVE, watching)
    s = session(settings, store)
    assert await s.join(next(iter(watching))) == {"joined": True, "viewers": 2}
    assert store.calls == ["load"]  # already watching: loaded once, nothing written


@pytest.mark.parametrize("status", [StreamStatus.CREATED, StreamStatus.ENDED])
async def test_nothing_happens_in_a_stream_that_is_not_live(
    settings: Settings, status: str
) -> None:
    store = MemoryStore(status)
    s = session(settings, store)
    user = uuid.uuid4()
    for call in (s.join(user), s.leave(user), s.chat(user, "hi", 0.0, False), s.react(user, "x")):
        with pytest.raises(Conflict) as exc:
            await call
        assert exc.value.code == "stream_not_live"
    assert store.calls == ["load"]


async def test_after_end_a_stale_caller_gets_stream_not_live(settings: Settings) -> None:
    store = MemoryStore(StreamStatus.LIVE)
    s = session(settings, store)
    await s.join(uuid.uuid4())
    await s.end()
    with pytest.raises(Conflict, match="not live"):
        await s.react(uuid.uuid4(), "fire")


async def test_chat_is_stored_with_its_moderation_verdict(settings: Settings) -> None:
    store = MemoryStore(StreamStatus.LIVE)
    s = session(settings, store)
    user = uuid.uuid4()
    assert (await s.chat(user, "hello", 0.1, False))["is_moderated"] is False
    assert (await s.chat(user, "rude", 0.97, True))["is_moderated"] is True
    assert [r["message"] for r in store.chat_rows] == ["hello", "rude"]


async def test_chat_and_reactions_are_rate_limited_per_user(settings: Settings) -> None:
    store = MemoryStore(StreamStatus.LIVE)
    s = session(settings, store)
    spammer, other = uuid.uuid4(), uuid.uuid4()
    for _ in range(3):  # chat_burst
        await s.chat(spammer, "spam", 0.0, False)
    with pytest.raises(RateLimited) as exc:
        await s.chat(spammer, "spam", 0.0, False)
    assert exc.value.retry_after > 0
    await s.chat(other, "hi", 0.0, False)  # buckets are per user
    for _ in range(2):  # reaction_burst: a bucket of its own
        await s.react(spammer, "fire")
    with pytest.raises(RateLimited):
        await s.react(spammer, "fire")
    assert len(store.chat_rows) == 4 and len(store.reactions) == 2


async def test_stats_report_the_stores_group_commits(settings: Settings) -> None:
    store = MemoryStore(StreamStatus.LIVE)
    s = session(settings, store)
    await s.join(uuid.uuid4())
    await s.react(uuid.uuid4(), "fire")
    assert await s.stats() == {"viewers": 1, "batches": 2, "writes": 2}
