"""Issue 12's write path without Ray or Postgres: the replica's `CallLane` (few actor
calls, admission), the batcher's `Bulk` writes, and the stream actor's bounded queue."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors.call_lane import CallLane
from actors.stream_session import StreamSession
from actors.write_batcher import Bulk
from lumalive.errors import RateLimited
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from serve_app.admission import Admission
from serve_app.sizing import replica_count
from serve_app.socket_chat import SocketChat
from tests.unit.test_stream_session import MemoryStore
from tests.unit.test_write_batcher import FakeDatabase, batcher, write


class SlowActor:
    """Answers each batch after `gate` opens; records the batches it got."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.gate = asyncio.Event()

    async def send(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        await self.gate.wait()
        return [ValueError(i) if i == "bad" else i.upper() for i in items]


async def test_a_lane_sends_what_queued_while_busy_as_one_call() -> None:
    actor = SlowActor()
    lane = CallLane(actor.send, max_inflight=1)
    calls = [asyncio.create_task(lane.call(x)) for x in ["a", "b", "bad", "c"]]
    await asyncio.sleep(0.01)
    assert actor.batches == [["a"]]  # idle: the first goes at once, alone
    actor.gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert actor.batches == [["a"], ["b", "bad", "c"]]  # the rest in one call
    assert results[0] == "A" and results[1] == "B" and results[3] == "C"
    assert isinstance(results[2], ValueError)  # only its own caller hears of it


async def test_a_full_lane_refuses_at_once_with_stream_busy() -> None:
    actor = SlowActor()
    lane = CallLane(actor.send, max_inflight=1, max_queued=2)
    held = [asyncio.create_task(lane.call(x)) for x in ["a", "b", "c"]]
    await asyncio.sleep(0.01)
    with pytest.raises(RateLimited) as exc:
        await lane.call("d")
    assert exc.value.code == "stream_busy" and exc.value.retry_after > 0
    actor.gate.set()
    assert await asyncio.gather(*held) == ["A", "B", "C"]


async def test_adjacent_bulk_items_are_one_call_in_submission_order() -> None:
    db = FakeDatabase()
    b = batcher(db)
    bulk_calls: list[list[str]] = []

    async def many(conn: Any, payloads: list[str]) -> list[str]:
        bulk_calls.append(payloads)
        conn.rows.extend((None, p) for p in payloads)
        return [p + "!" for p in payloads]

    chat: Bulk[str] = Bulk(many)
    user = uuid.uuid4()
    results = await asyncio.gather(
        b.submit_bulk(chat, "m1"),
        b.submit_bulk(chat, "m2"),
        b.submit(user, write(db, "join")),
        b.submit_bulk(chat, "m3"),
    )
    assert results == ["m1!", "m2!", "JOIN", "m3!"]
    assert bulk_calls == [["m1", "m2"], ["m3"]]  # one transaction; the join splits the run
    assert [v for _, v in db.committed] == ["m1", "m2", "join", "m3"]  # order kept


async def test_a_stream_refuses_writes_past_its_queue_with_stream_busy(tmp_path: Path) -> None:
    store = MemoryStore(StreamStatus.LIVE)
    gate = asyncio.Event()

    async def slow_chat(user_id: Any, message: str, score: float, moderated: bool) -> Any:
        await gate.wait()
        return {"message": message}

    store.chat = slow_chat  # type: ignore[method-assign]
    settings = Settings(data_dir=tmp_path, stream_max_pending_writes=2, chat_burst=100)
    session = StreamSession(uuid.uuid4(), uuid.uuid4(), settings, store=store)
    items = [(uuid.uuid4(), f"m{i}", 0.0, False) for i in range(3)]
    batch = asyncio.create_task(session.chat_many(items))
    await asyncio.sleep(0.01)
    gate.set()
    results = await batch
    assert [r["message"] for r in results[:2]] == ["m0", "m1"]  # type: ignore[index]
    assert isinstance(results[2], RateLimited) and results[2].code == "stream_busy"


async def test_the_door_sheds_past_its_inflight_bound_with_503_and_retry_after() -> None:
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    door = Admission(app, max_inflight=2)
    transport = httpx.ASGITransport(app=door)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        held = [asyncio.create_task(client.post("/api/x")) for _ in range(2)]
        await asyncio.sleep(0.01)
        shed = await client.post("/api/x")
        exempt = asyncio.create_task(client.get("/healthz"))  # never shed
        await asyncio.sleep(0.01)
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert (await exempt).status_code == 200
    assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
    assert shed.json()["error"]["code"] == "overloaded" and door.shed == 1
    assert door.inflight == 0


def test_up_picks_one_replica_per_two_cpus_unless_told(tmp_path: Path) -> None:
    auto = Settings(data_dir=tmp_path)
    assert [replica_count(auto, cpus) for cpus in (1, 2, 4, 8, 64)] == [1, 1, 2, 4, 8]
    assert replica_count(Settings(data_dir=tmp_path, api_replicas=3), cpus=2) == 3


async def test_socket_chat_answers_like_the_post() -> None:
    user = uuid.uuid4()
    sent: list[str] = []

    async def post(author: Any, message: str) -> dict[str, Any]:
        if message == "slow down":
            raise RateLimited("too many chat messages", 2.2)
        sent.append(message)
        return {
            "id": uuid.uuid4(), "seq": 1, "stream_id": uuid.uuid4(), "user_id": author,
            "message": message, "is_deleted": False, "is_moderated": False,
            "created_at": "2026-01-01T00:00:00Z", "moderation_score": 0.01,
        }  # fmt: skip

    chat = SocketChat(user, post, max_bytes=200)
    ack = await chat.handle('{"type": "chat", "message": "  hi  ", "ref": "a"}')
    assert ack is not None and ack["type"] == "chat_ack" and ack["ref"] == "a"
    assert ack["chat"]["message"] == "hi" and sent == ["hi"]
    bad = await chat.handle('{"type": "chat", "message": "", "ref": 3}')
    assert bad is not None and bad["error"]["code"] == "validation_error" and bad["ref"] == 3
    limited = await chat.handle('{"type": "chat", "message": "slow down"}')
    assert limited is not None and limited["error"]["code"] == "rate_limited"
    assert limited["error"]["status"] == 429 and limited["error"]["retryAfter"] == 3
    big = await chat.handle('{"type": "chat", "message": "' + "x" * 300 + '"}')
    assert big is not None and big["error"]["code"] == "payload_too_large"
    assert await chat.handle("not json") is None and await chat.handle('{"type": "ping"}') is None
    anon = await SocketChat(None, post, 200).handle('{"type": "chat", "message": "hi"}')
    assert anon is not None and anon["error"]["code"] == "missing_token"
    assert sent == ["hi"]
