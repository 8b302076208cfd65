"""Live events over SSE and WebSocket, against the real system (Serve, actors, Postgres
LISTEN/NOTIFY): latency, replay on reconnect, privacy, moderation, coalescing, metrics."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import ray
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.utils.api import BASE
from tests.utils.sse import SSE


async def ws_messages(ws: Any) -> AsyncIterator[dict[str, Any]]:
    async for raw in ws:
        yield json.loads(raw)


def ws_url(settings: Any, sid: str, token: str | None = None, **params: Any) -> str:
    q = {**({"access_token": token} if token else {}), **params}
    query = "&".join(f"{k}={v}" for k, v in q.items())
    url = f"ws://{settings.api_host}:{settings.api_port}{BASE}/{sid}/ws"
    return f"{url}?{query}" if q else url


def is_chat(message_id: str) -> Any:
    return lambda f: (
        f.get("event") == "chat_message" and f["data"]["data"]["messageId"] == message_id
    )


async def test_sse_and_websocket_get_chat_within_a_second(client, settings, make_user, make_stream):
    owner, viewer, watcher, author = [await make_user() for _ in range(4)]
    sid = (await make_stream(owner, start=True))["id"]
    # The SSE viewer authenticates in the query string, as an EventSource must.
    async with (
        SSE(client, sid, params={"access_token": viewer.token}) as sse,
        ws_connect(ws_url(settings, sid, watcher.token)) as ws,
    ):
        assert sse.status == 200
        assert sse.response.headers["content-type"].startswith("text/event-stream")
        first = await sse.next()
        assert first["event"] == "viewer_count" and "id" not in first  # ready
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "viewer_count"

        posted_at = time.monotonic()
        r = await client.post(
            f"{BASE}/{sid}/chat", json={"message": "hello, live world"}, headers=author.auth
        )
        assert r.status_code == 201
        mid = r.json()["id"]

        frame = await sse.until(is_chat(mid), timeout=5)
        assert frame["at"] - posted_at < 1.0
        assert frame["data"]["data"]["message"] == "hello, live world"
        assert frame["data"]["type"] == "chat_message" and int(frame["id"]) == frame["data"]["id"]

        async def ws_chat() -> float:
            async for msg in ws_messages(ws):
                if msg["type"] == "chat_message" and msg["data"]["messageId"] == mid:
                    return time.monotonic()
            raise AssertionError("socket closed")

        assert await asyncio.wait_for(ws_chat(), 5) - posted_at < 1.0

        # Joins show as viewer_joined and a viewer_count tick.
        await client.post(f"{BASE}/{sid}/join", headers=author.auth)
        await sse.until(lambda f: f["event"] == "viewer_joined")
        count = await sse.until(lambda f: f["event"] == "viewer_count")
        assert count["data"]["data"]["viewerCount"] == 1


async def test_reconnect_with_last_event_id_replays_exactly_what_was_missed(
    client, make_user, make_stream
):
    owner, viewer, author = await make_user(), await make_user(), await make_user()
    sid = (await make_stream(owner, start=True))["id"]

    async def chat(text: str) -> str:
        r = await client.post(f"{BASE}/{sid}/chat", json={"message": text}, headers=author.auth)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    async with SSE(client, sid, headers=viewer.auth) as sse:
        await sse.next()  # viewer_count: subscribed
        first = await chat("one")
        last_id = (await sse.until(is_chat(first)))["id"]

    # Missed while disconnected: two messages, a join and reactions.
    missed = [await chat("two"), await chat("three")]
    await client.post(f"{BASE}/{sid}/join", headers=author.auth)
    # Four go out one by one (a quiet stream), the rest are summed (see the coalescer).
    for reaction in ("🔥", "🔥", "👏", "🚀", "🔥", "👏", "👏"):
        r = await client.post(
            f"{BASE}/{sid}/reaction", json={"reaction": reaction}, headers=author.auth
        )
        assert r.status_code == 201
    expected = (
        await client.get(f"{BASE}/{sid}/events", params={"since": last_id}, headers=viewer.auth)
    ).json()["items"]

    async with SSE(client, sid, headers={**viewer.auth, "Last-Event-ID": last_id}) as sse:
        got = []
        while len(got) < 8:  # two chats, a join, four reactions, one batch
            frame = await sse.next()
            assert frame is not None
            if frame["event"] != "viewer_count":
                got.append(frame)
        live = await chat("four")
        after = await sse.until(lambda f: f["event"] != "viewer_count")

    assert [f["event"] for f in got] == [
        "chat_message",
        "chat_message",
        "viewer_joined",
        *["reaction"] * 4,
        "reaction_batch",
    ]
    assert [f["data"]["data"]["messageId"] for f in got[:2]] == missed
    assert [int(f["id"]) for f in got[:7]] == [e["id"] for e in expected[:7]]
    assert [f["data"]["data"]["reaction"] for f in got[3:7]] == ["🔥", "🔥", "👏", "🚀"]
    batch = got[7]["data"]["data"]
    assert batch["counts"] == {"🔥": 1, "👏": 2} and batch["total"] == 3
    assert int(got[7]["id"]) == expected[-1]["id"] == batch["lastSeq"]
    # ...and then the live one, nothing twice.
    assert after["event"] == "chat_message" and after["data"]["data"]["messageId"] == live
    ids = [int(f["id"]) for f in got] + [int(after["id"])]
    assert ids == sorted(set(ids)) and ids[0] > int(last_id)

    # The end closes the stream; an ended stream with nothing left to send answers 204.
    async with SSE(client, sid, headers={**viewer.auth, "Last-Event-ID": after["id"]}) as sse:
        await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
        ended = await sse.until(lambda f: f["event"] == "stream_ended")
        rest = [await sse.next()]
        while rest[-1] is not None:
            rest.append(await sse.next())
        assert all(f["event"] == "viewer_count" for f in rest[:-1])  # then the server closed
    r = await client.get(
        f"{BASE}/{sid}/events/stream", headers={**viewer.auth, "Last-Event-ID": ended["id"]}
    )
    assert r.status_code == 204


async def test_private_stream_is_not_subscribable_by_strangers(
    client, settings, make_user, make_stream
):
    owner, guest, stranger = await make_user(), await make_user(), await make_user()
    sid = (await make_stream(owner, start=True, privacy="private"))["id"]
    await client.post(f"{BASE}/{sid}/invite", json={"userId": str(guest.id)}, headers=owner.auth)

    for headers in (stranger.auth, {}):
        r = await client.get(f"{BASE}/{sid}/events/stream", headers=headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "stream_not_found"
    async with ws_connect(ws_url(settings, sid, stranger.token)) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["error"]["code"] == "stream_not_found"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4404

    async with (
        SSE(client, sid, headers=guest.auth) as sse,
        ws_connect(ws_url(settings, sid, stranger.token)) as spy,
    ):
        assert sse.status == 200
        await sse.next()
        r = await client.post(
            f"{BASE}/{sid}/chat", json={"message": "invitees only"}, headers=owner.auth
        )
        await sse.until(is_chat(r.json()["id"]))
        with pytest.raises(ConnectionClosed):
            while True:
                msg = json.loads(await asyncio.wait_for(spy.recv(), 10))
                assert msg["type"] == "error"


async def test_moderated_chat_is_not_delivered_to_other_viewers(
    client, settings, make_user, make_stream
):
    owner, viewer, author = await make_user(), await make_user(), await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    async with (
        SSE(client, sid, headers=viewer.auth) as sse,
        ws_connect(ws_url(settings, sid, viewer.token)) as ws,
    ):
        await sse.next()
        json.loads(await asyncio.wait_for(ws.recv(), 10))
        bad = await client.post(
            f"{BASE}/{sid}/chat", json={"message": "you are a fucking idiot"}, headers=author.auth
        )
        assert bad.json()["is_moderated"] is True
        good = await client.post(
            f"{BASE}/{sid}/chat", json={"message": "lovely stream"}, headers=author.auth
        )
        frames = []
        while not frames or not is_chat(good.json()["id"])(frames[-1]):
            frames.append(await sse.next())
        received = []
        async for msg in ws_messages(ws):
            received.append(msg)
            if msg["type"] == "chat_message":
                break
    kinds = [f["event"] for f in frames if f["event"] != "viewer_count"]
    assert kinds == ["moderation_action", "chat_message"]
    assert frames[-2]["data"]["data"]["messageId"] == bad.json()["id"]
    assert [m["type"] for m in received if m["type"] != "viewer_count"] == kinds
    assert "idiot" not in "\n".join(sse.raw) and "idiot" not in json.dumps(received)


async def test_reactions_under_load_are_coalesced_into_batches(client, make_user, make_stream):
    owner, viewer = await make_user(), await make_user()
    fans = [await make_user() for _ in range(3)]
    sid = (await make_stream(owner, start=True))["id"]
    async with SSE(client, sid, headers=viewer.auth) as sse:
        await sse.next()
        sent = ["🔥", "❤️", "👏"] * 10

        async def react(i: int, reaction: str) -> int:
            r = await client.post(
                f"{BASE}/{sid}/reaction", json={"reaction": reaction}, headers=fans[i % 3].auth
            )
            return r.status_code

        started = time.monotonic()
        assert set(await asyncio.gather(*(react(i, x) for i, x in enumerate(sent)))) == {201}
        singles, batches, total = [], [], 0
        while total < len(sent):
            frame = await sse.next()
            assert frame is not None
            if frame["event"] == "reaction":
                singles.append(frame["data"]["data"]["reaction"])
                total += 1
            elif frame["event"] == "reaction_batch":
                batches.append(frame["data"]["data"])
                total += frame["data"]["data"]["total"]
        elapsed = time.monotonic() - started
    # The rule: per 250 ms tick at most 4 single reactions and one batch (no other
    # events were sent here), however fast they come.
    ticks = elapsed / 0.25 + 1
    assert total == 30 and len(singles) <= 4 * ticks, (len(singles), elapsed)
    assert len(batches) <= ticks, (len(batches), elapsed)
    counts = Counter(singles)
    for b in batches:
        counts.update(b["counts"])
    assert counts == {"🔥": 10, "❤️": 10, "👏": 10}


async def test_operator_metrics_reach_the_prometheus_export(client, make_user, make_stream):
    owner = await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    await client.post(f"{BASE}/{sid}/chat", json={"message": "metrics please"}, headers=owner.auth)
    async with SSE(client, sid, headers=owner.auth) as sse:
        await sse.next()
        await client.post(f"{BASE}/{sid}/join", headers=owner.auth)
        await sse.until(lambda f: f["event"] == "viewer_joined")
    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    wanted = [
        "ray_lumalive_live_streams",
        "ray_lumalive_stream_viewers",
        "ray_lumalive_chat_messages_total",
        "ray_lumalive_api_latency_ms_bucket",
        "ray_lumalive_fanout_lag_ms_bucket",
        "ray_lumalive_realtime_subscribers",
    ]
    deadline = time.monotonic() + 40
    async with httpx.AsyncClient() as http:
        while True:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            missing = [m for m in wanted if m not in text]
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    assert not missing, missing
    assert 'route="/api/live-streaming/{stream_id}/chat"' in text
