"""The event contract, end to end: SSE, WebSocket and `GET …/events` all carry
`{id, type, streamId, createdAt, data}` with camelCase `data` as the spec's client
reads it (`event.data.userId`, `.message`, `.reaction`, and `username`), and
reactions are any single emoji or a custom `:name:`."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

from tests.utils.api import BASE, assert_error
from tests.utils.sse import SSE

CONTRACT = {"id", "type", "streamId", "createdAt", "data"}
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # ZWJ sequence
THUMBS_UP_MEDIUM = "\U0001f44d\U0001f3fd"  # with a skin tone modifier


def ws_url(settings: Any, sid: str, token: str) -> str:
    return f"ws://{settings.api_host}:{settings.api_port}{BASE}/{sid}/ws?access_token={token}"


async def ws_until(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg["type"] == kind:
            return dict(msg)


def check_contract(body: dict[str, Any], sid: str) -> None:
    assert set(body) == CONTRACT, body
    assert body["streamId"] == sid and isinstance(body["id"], int)
    datetime.fromisoformat(body["createdAt"])  # ISO 8601


async def test_sse_and_websocket_carry_the_contract(client, settings, make_user, make_stream):
    owner, viewer, fan = await make_user(), await make_user("viewer"), await make_user("fan")
    sid = (await make_stream(owner, start=True))["id"]
    async with (
        SSE(client, sid, headers=viewer.auth) as sse,
        ws_connect(ws_url(settings, sid, viewer.token)) as ws,
    ):
        first = await sse.next()
        assert first is not None and first["event"] == "viewer_count"
        assert first["data"]["data"] == {"viewerCount": 0} and first["data"]["id"] is None
        await ws_until(ws, "viewer_count")

        assert (await client.post(f"{BASE}/{sid}/join", headers=fan.auth)).status_code == 200
        r = await client.post(f"{BASE}/{sid}/chat", json={"message": "hi all"}, headers=fan.auth)
        assert r.status_code == 201, r.text
        chat_id = r.json()["id"]
        r = await client.post(f"{BASE}/{sid}/reaction", json={"reaction": "🚀"}, headers=fan.auth)
        assert r.status_code == 201, r.text

        got = {}
        for kind in ("viewer_joined", "chat_message", "reaction"):
            frame = await sse.until(lambda f, k=kind: f["event"] == k)
            assert int(frame["id"]) == frame["data"]["id"]  # the SSE id is the event's seq
            got[kind] = frame["data"]
            assert await ws_until(ws, kind) == frame["data"]  # the same message on both

    for body in got.values():
        check_contract(body, sid)
    person = {"userId": str(fan.id), "username": fan.name}
    assert got["viewer_joined"]["data"] == person
    assert got["chat_message"]["data"] == {**person, "messageId": chat_id, "message": "hi all"}
    assert got["reaction"]["data"] == {**person, "reaction": "🚀"}


async def test_rest_events_have_the_same_shape_as_the_live_messages(client, make_user, make_stream):
    owner, fan = await make_user(), await make_user("fan")
    sid = (await make_stream(owner, start=True))["id"]
    async with SSE(client, sid, headers=owner.auth) as sse:
        await sse.next()  # subscribed
        await client.post(f"{BASE}/{sid}/join", headers=fan.auth)
        await client.post(f"{BASE}/{sid}/chat", json={"message": "same"}, headers=fan.auth)
        await client.post(f"{BASE}/{sid}/reaction", json={"reaction": "👏"}, headers=fan.auth)
        await client.post(f"{BASE}/{sid}/leave", headers=fan.auth)
        live = [
            (await sse.until(lambda f, k=k: f["event"] == k))["data"]
            for k in ("viewer_joined", "chat_message", "reaction", "viewer_left")
        ]
    r = await client.get(f"{BASE}/{sid}/events", params={"since": 0}, headers=owner.auth)
    assert r.status_code == 200, r.text
    page = r.json()
    items = page["items"][1:]  # after stream_started, which came before we subscribed
    assert page["items"][0]["type"] == "stream_started"
    for body in page["items"]:
        check_contract(body, sid)

    def same(e: dict[str, Any]) -> tuple[Any, ...]:
        return (e["id"], e["type"], e["data"], datetime.fromisoformat(e["createdAt"]))

    assert [same(e) for e in items] == [same(e) for e in live]
    assert items[-1]["data"]["watchDuration"] >= 0  # camelCase, for the owner
    assert page["next_cursor"] == items[-1]["id"]


@pytest.mark.parametrize(
    "reaction",
    ["🚀", FAMILY, THUMBS_UP_MEDIUM, ":party_parrot:", "🇫🇷", "1️⃣"],
    ids=["rocket", "zwj-family", "skin-tone", "custom", "flag", "keycap"],
)
async def test_any_single_emoji_or_custom_reaction_is_accepted(
    client, make_user, make_stream, reaction
):
    owner = await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    r = await client.post(f"{BASE}/{sid}/reaction", json={"reaction": reaction}, headers=owner.auth)
    assert r.status_code == 201, r.text
    assert r.json()["reaction"] == reaction
    # ...and counted by type, as it is.
    a = (await client.get(f"{BASE}/{sid}/analytics", headers=owner.auth)).json()
    assert a["reactions"] == {reaction: 1}
    [event] = (await client.get(f"{BASE}/{sid}/events", params={"type": "reaction"})).json()[
        "items"
    ]
    assert event["data"] == {"reaction": reaction}  # anonymous: no user


@pytest.mark.parametrize("reaction", ["ab", "🚀🚀", "<script>", "1", ":Party:", "🚀 "])
async def test_anything_else_is_refused(client, make_user, make_stream, reaction):
    owner = await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    r = await client.post(f"{BASE}/{sid}/reaction", json={"reaction": reaction}, headers=owner.auth)
    assert_error(r, 422, "validation_error")
