"""Issue 12 on the real system: chat written by one `post_chat` call per batch (sql/0014)
under the policies of today, chat over the event WebSocket with the POST's errors, and
the stream actor's batch call with per-message refusals."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from websockets.asyncio.client import connect as ws_connect

from actors import stream_actor
from lumalive.errors import LumaError
from tests.utils.api import BASE


def ws_url(settings: Any, sid: str, token: str) -> str:
    return f"ws://{settings.api_host}:{settings.api_port}{BASE}/{sid}/ws?access_token={token}"


async def _replies(ws: Any, refs: list[Any]) -> dict[Any, dict[str, Any]]:
    """The chat_ack or error frames answering `refs`, in whatever order they come
    (events in between are skipped)."""
    out: dict[Any, dict[str, Any]] = {}
    while len(out) < len(refs):
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg.get("ref") in refs and msg["type"] in ("chat_ack", "error"):
            out[msg["ref"]] = msg
    return out


async def _reply(ws: Any, ref: Any) -> dict[str, Any]:
    return (await _replies(ws, [ref]))[ref]


async def test_chat_over_the_websocket_is_acked_stored_and_refused_like_post(
    client, settings, make_user, make_stream
):
    owner, viewer = await make_user(), await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    async with ws_connect(ws_url(settings, sid, viewer.token)) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "viewer_count"
        await ws.send(json.dumps({"type": "chat", "message": "  hi over ws  ", "ref": "a"}))
        ack = await _reply(ws, "a")
        assert ack["type"] == "chat_ack", ack
        chat = ack["chat"]
        assert chat["message"] == "hi over ws" and chat["user_id"] == str(viewer.id)
        # its own event comes on the same socket, in the event contract
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if event["type"] == "chat_message":
                break
        assert event["data"]["messageId"] == chat["id"] and event["data"]["message"] == "hi over ws"
        # the POST's refusals, as frames: validation, then the chat rate limit (burst 10)
        await ws.send(json.dumps({"type": "chat", "message": "   ", "ref": "b"}))
        bad = await _reply(ws, "b")
        assert bad["error"]["code"] == "validation_error" and bad["error"]["status"] == 422
        for i in range(12):
            await ws.send(json.dumps({"type": "chat", "message": f"m{i}", "ref": f"r{i}"}))
        refs = [f"r{i}" for i in range(12)]
        replies = list((await _replies(ws, refs)).values())
        limited = [r for r in replies if r["type"] == "error"]
        assert limited and all(r["error"]["code"] == "rate_limited" for r in limited)
        assert all(r["error"]["status"] == 429 and r["error"]["retryAfter"] >= 1 for r in limited)
    r = await client.get(f"{BASE}/{sid}/chat", params={"limit": 100}, headers=viewer.auth)
    stored = {m["id"] for m in r.json()["items"]}
    acked = {chat["id"]} | {r["chat"]["id"] for r in replies if r["type"] == "chat_ack"}
    assert acked <= stored  # every ack is a committed row


async def test_anonymous_websocket_chat_is_401(client, settings, make_user, make_stream):
    owner = await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    url = f"ws://{settings.api_host}:{settings.api_port}{BASE}/{sid}/ws"
    async with ws_connect(url) as ws:
        await asyncio.wait_for(ws.recv(), 10)
        await ws.send(json.dumps({"type": "chat", "message": "hello", "ref": 7}))
        err = await _reply(ws, 7)
    assert err["error"]["code"] == "missing_token" and err["error"]["status"] == 401


async def test_one_batch_call_writes_each_message_with_its_event_and_refuses_a_banned_author(
    client, settings, make_user, make_stream
):
    owner, ok1, banned, ok2 = [await make_user() for _ in range(4)]
    stream = await make_stream(owner, start=True)
    sid = stream["id"]
    for person in (ok1, banned, ok2):
        assert (await client.post(f"{BASE}/{sid}/join", headers=person.auth)).status_code == 200
    r = await client.post(f"{BASE}/{sid}/bans", json={"userId": str(banned.id)}, headers=owner.auth)
    assert r.status_code == 201, r.text
    # Straight to the stream's actor, past the API's own ban check: the policies of
    # sql/0006 must refuse the banned author's row inside the batch, and only it.
    actor = stream_actor.get_or_create(uuid.UUID(sid), owner.id, settings)
    items = [
        (ok1.id, "first", 0.01, False),
        (banned.id, "sneaky", 0.01, False),
        (ok2.id, "hidden one", 0.95, True),
    ]
    results = await actor.chat_many.remote(items)
    assert isinstance(results[1], Exception) and not isinstance(results[1], LumaError)
    first, hidden = results[0], results[2]
    assert first["message"] == "first" and hidden["is_moderated"] is True
    events = (
        await client.get(f"{BASE}/{sid}/events", params={"since": 0}, headers=owner.auth)
    ).json()["items"]
    by_message = {e["data"].get("messageId"): e for e in events}
    assert by_message[str(first["id"])]["type"] == "chat_message"
    assert by_message[str(first["id"])]["data"]["message"] == "first"
    hid = by_message[str(hidden["id"])]
    assert hid["type"] == "moderation_action" and "message" not in hid["data"]
    assert hid["data"]["action"] == "chat_message_hidden" and hid["data"]["score"] == 0.95
    assert "sneaky" not in json.dumps(events)
    stats = await actor.stats.remote()
    assert stats["writes"] >= 2
