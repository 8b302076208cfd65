"""What each audience reads of a stream's events: the owner, a signed-in viewer and an
anonymous caller, for every event type, over REST (`GET …/events`), SSE (live, and the
replay of a reconnecting client) and the WebSocket; and the stream row's `analytics`.

The rules (sql/0005 `redact_event`): viewer ids only for signed-in callers, watch time,
moderated authors, moderation details, reports and the ingest's events only for the
owner, and a deleted message's text for no one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

from lumalive.store import activity
from tests.utils.api import BASE
from tests.utils.sse import SSE

AUDIENCES = ("owner", "viewer", "anonymous")

# label -> the keys of `data` each audience sees, as clients read them (the event
# contract: camelCase, and `username` wherever `userId` is shown); None: not sent to it
EXPECTED: dict[str, dict[str, set[str] | None]] = {
    "stream_started": dict.fromkeys(AUDIENCES, {"userId", "username"}),
    "viewer_joined": {
        "owner": {"userId", "username"},
        "viewer": {"userId", "username"},
        "anonymous": set(),
    },
    "chat_message": dict.fromkeys(AUDIENCES, {"messageId", "userId", "username", "message"}),
    "chat_message/deleted": dict.fromkeys(
        AUDIENCES, {"messageId", "userId", "username", "deleted"}
    ),
    "moderation_action/chat_message_hidden": {
        "owner": {"action", "messageId", "userId", "username", "score"},
        "viewer": {"action", "messageId"},
        "anonymous": {"action", "messageId"},
    },
    "moderation_action/chat_message_deleted": {
        "owner": {"action", "messageId", "by"},
        "viewer": {"action", "messageId"},
        "anonymous": {"action", "messageId"},
    },
    "reaction": {
        "owner": {"userId", "username", "reaction"},
        "viewer": {"userId", "username", "reaction"},
        "anonymous": {"reaction"},
    },
    "report": {"owner": {"reportId", "reason"}, "viewer": None, "anonymous": None},
    "ingest_connected": {"owner": set(), "viewer": None, "anonymous": None},
    "segment_dropped": {"owner": {"sourceSequence", "error"}, "viewer": None, "anonymous": None},
    "moderation_action/segment_flagged": {
        "owner": {"action", "sourceSequence", "score", "threshold", "model"},
        "viewer": {"action"},
        "anonymous": {"action"},
    },
    "viewer_left": {
        "owner": {"userId", "username", "watchDuration"},
        "viewer": {"userId", "username"},
        "anonymous": set(),
    },
    "stream_ended": dict.fromkeys(AUDIENCES, {"reason", "duration"}),
}


def label(event_type: str, data: dict[str, Any]) -> str:
    if event_type == "moderation_action":
        return f"moderation_action/{data['action']}"
    if event_type == "chat_message" and data.get("deleted"):
        return "chat_message/deleted"
    return event_type


def expected(order: list[str], audience: str) -> list[tuple[str, set[str]]]:
    """`order`'s events that `audience` gets, with the keys it sees of each."""
    return [(x, keys) for x in order if (keys := EXPECTED[x][audience]) is not None]


@pytest.fixture(scope="module")
async def feed(client, db, make_user) -> dict[str, Any]:
    """One public stream with every event type, read live over SSE by each audience
    while it happened; afterwards the same from the table."""
    owner, viewer, author = await make_user("owner"), await make_user("bob"), await make_user()
    who = {"owner": owner.auth, "viewer": viewer.auth, "anonymous": {}}
    r = await client.post(f"{BASE}/create", json={"title": "privacy"}, headers=owner.auth)
    sid = r.json()["id"]
    await client.post(f"{BASE}/start/{sid}", headers=owner.auth)
    live: dict[str, list[dict[str, Any]]] = {}
    async with (
        SSE(client, sid, headers=who["owner"]) as o,
        SSE(client, sid, headers=who["viewer"]) as v,
        SSE(client, sid, headers=who["anonymous"]) as a,
    ):
        subs = {"owner": o, "viewer": v, "anonymous": a}
        for sub in subs.values():
            assert (await sub.next())["event"] == "viewer_count"  # subscribed

        async def post(path: str, by: Any, **body: Any) -> dict[str, Any]:
            r = await client.post(f"{BASE}/{sid}/{path}", json=body or None, headers=by.auth)
            assert r.status_code in (200, 201), r.text
            return dict(r.json())

        await post("join", viewer)
        await post("chat", author, message="hello everyone")
        await post("chat", author, message="you are a fucking idiot")  # moderated
        oops = await post("chat", author, message="my phone number is 555-0199")
        r = await client.delete(f"{BASE}/{sid}/chat/{oops['id']}", headers=author.auth)
        assert r.status_code == 200, r.text
        await post("reaction", viewer, reaction="🔥")
        await post("report", viewer, reason="spam", details="ads")
        async with db.acting(owner.id) as conn:  # as the ingest and media pipeline write them
            await activity.add_event(conn, sid, "ingest_connected", {})
            await activity.add_event(
                conn, sid, "segment_dropped", {"source_sequence": 3, "error": "corrupt"}
            )
            await activity.add_event(
                conn,
                sid,
                "moderation_action",
                {
                    "action": "segment_flagged",
                    "source_sequence": 4,
                    "score": 0.9,
                    "threshold": 0.8,
                    "model": "nsfw",
                },
            )
        await post("leave", viewer)
        r = await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
        assert r.status_code == 200, r.text
        for audience, sub in subs.items():
            live[audience] = [f for f in await sub.all() if f["event"] != "viewer_count"]
    return {"sid": sid, "owner": owner, "who": who, "viewer": viewer, "live": live}


# The order the fixture made them in (the deleted message's own event comes before
# its deletion; live, it went out before it was deleted).
ORDER = [
    "stream_started",
    "viewer_joined",
    "chat_message",
    "moderation_action/chat_message_hidden",
    "chat_message/deleted",
    "moderation_action/chat_message_deleted",
    "reaction",
    "report",
    "ingest_connected",
    "segment_dropped",
    "moderation_action/segment_flagged",
    "viewer_left",
    "stream_ended",
]


def _frames(frames: list[dict[str, Any]]) -> list[tuple[str, set[str]]]:
    return [(label(f["event"], f["data"]["data"]), set(f["data"]["data"])) for f in frames]


@pytest.mark.parametrize("audience", AUDIENCES)
async def test_rest_events_show_each_audience_only_its_part(client, feed, audience):
    r = await client.get(f"{BASE}/{feed['sid']}/events?limit=100", headers=feed["who"][audience])
    items = r.json()["items"]
    assert all(set(e) == {"id", "type", "streamId", "createdAt", "data"} for e in items)
    got = [(label(e["type"], e["data"]), set(e["data"])) for e in items]
    assert got == expected(ORDER, audience)
    _never_leaks(json.dumps(items), feed, audience)
    # filtering by type cannot reach what the audience does not get
    r = await client.get(f"{BASE}/{feed['sid']}/events?type=report", headers=feed["who"][audience])
    assert len(r.json()["items"]) == (1 if audience == "owner" else 0)


@pytest.mark.parametrize("audience", AUDIENCES)
async def test_sse_live_shows_each_audience_only_its_part(feed, audience):
    frames = feed["live"][audience]
    # One reaction on a quiet stream goes out on its own, redacted like any event.
    assert "reaction_batch" not in [f["event"] for f in frames]
    got = _frames(frames)
    # Subscribed once it had started. The live feed reads each event's row when told
    # of it: the deleted message went out as itself if read before its author deleted
    # it, or already as its tombstone if the deletion came first (both are correct; a
    # deleted message is never sent live after its deletion). Either way, once.
    said = [x for x, _ in got if x in ("chat_message", "chat_message/deleted")][1:2]
    assert said, got
    want = [(said[0] if x == "chat_message/deleted" else x) for x in ORDER if x != "stream_started"]
    assert got == [(x, EXPECTED[x][audience]) for x in want if EXPECTED[x][audience] is not None]
    _never_leaks(json.dumps(frames), feed, audience, deleted_text_ok=True)


@pytest.mark.parametrize("audience", AUDIENCES)
async def test_sse_replay_shows_each_audience_only_its_part(client, feed, audience):
    """A client reconnecting with Last-Event-ID 0 is replayed everything, from the table."""
    headers = {**feed["who"][audience], "Last-Event-ID": "0"}
    async with SSE(client, feed["sid"], headers=headers) as sse:
        frames = [f for f in await sse.all() if f["event"] != "viewer_count"]
    got = _frames(frames)
    assert got == expected(ORDER, audience)
    _never_leaks("\n".join(sse.raw), feed, audience)


async def test_websocket_replay_to_an_anonymous_caller(settings, feed):
    url = f"ws://{settings.api_host}:{settings.api_port}{BASE}/{feed['sid']}/ws?last_event_id=0"
    received = []
    async with ws_connect(url) as ws:
        async for raw in ws:
            received.append(json.loads(raw))
    events = [m for m in received if m["type"] != "viewer_count"]
    got = [(label(m["type"], m["data"]), set(m["data"])) for m in events]
    assert got == expected(ORDER, "anonymous")
    _never_leaks(json.dumps(received), feed, "anonymous")


def _never_leaks(text: str, feed: dict[str, Any], audience: str, deleted_text_ok: bool = False):
    assert "idiot" not in text  # moderated: no one gets the text
    assert "event_data" not in text and "user_id" not in text  # the contract's keys only
    if not deleted_text_ok:
        assert "555-0199" not in text  # deleted: no one reads it from the log
    if audience == "anonymous":
        assert str(feed["viewer"].id) not in text  # viewer ids: signed-in callers only


@pytest.mark.parametrize("audience", AUDIENCES)
async def test_stream_row_analytics_are_the_owner_s(client, feed, audience):
    h = feed["who"][audience]
    rows = [
        (await client.get(f"{BASE}/{feed['sid']}", headers=h)).json(),
        *[
            s
            for s in (await client.get(f"{BASE}/user/{feed['owner'].id}", headers=h)).json()[
                "items"
            ]
            if s["id"] == feed["sid"]
        ],
    ]
    assert len(rows) == 2
    for row in rows:
        if audience == "owner":
            assert row["analytics"]["unique_viewers"] == 1
            assert row["analytics"]["total_watch_seconds"] >= 0
        else:
            assert row["analytics"] is None
