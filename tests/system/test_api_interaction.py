"""Inside a stream over HTTP: join/leave, chat, moderation, reactions, events, analytics,
invites, reports, friends."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.utils.api import BASE, assert_error


async def test_join_is_idempotent_and_leave_records_watch_time(client, make_user, make_stream):
    owner, viewer = await make_user(), await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    for _ in range(3):
        r = await client.post(f"{BASE}/{sid}/join", headers=viewer.auth)
        assert r.status_code == 200 and r.json()["viewers"] == 1
    await asyncio.sleep(1.1)
    r = (await client.post(f"{BASE}/{sid}/leave", headers=viewer.auth)).json()
    assert r["left"] is True and r["watch_duration"] >= 1 and r["viewers"] == 0
    r = (await client.post(f"{BASE}/{sid}/leave", headers=viewer.auth)).json()
    assert r["left"] is False and r["viewers"] == 0
    a = (await client.get(f"{BASE}/{sid}/analytics", headers=owner.auth)).json()
    assert a["unique_viewers"] == 1 and a["peak_viewers"] == 1 and a["current_viewers"] == 0
    assert a["total_watch_time_s"] >= 1 and a["average_watch_time_s"] >= 1
    # rejoining is a second viewing of the same unique viewer
    await client.post(f"{BASE}/{sid}/join", headers=viewer.auth)
    a = (await client.get(f"{BASE}/{sid}/analytics", headers=owner.auth)).json()
    assert a["unique_viewers"] == 1 and a["current_viewers"] == 1


async def test_join_needs_live_stream_and_user(client, make_user, make_stream):
    owner, viewer = await make_user(), await make_user()
    sid = (await make_stream(owner))["id"]
    assert_error(
        await client.post(f"{BASE}/{sid}/join", headers=viewer.auth), 409, "stream_not_live"
    )
    assert_error(
        await client.post(f"{BASE}/{sid}/chat", json={"message": "hi"}, headers=viewer.auth),
        409,
        "stream_not_live",
    )
    assert_error(
        await client.post(f"{BASE}/{sid}/reaction", json={"reaction": "🔥"}, headers=viewer.auth),
        409,
        "stream_not_live",
    )
    assert_error(await client.post(f"{BASE}/{sid}/join"), 401)
    assert_error(await client.post(f"{BASE}/{uuid.uuid4()}/join", headers=viewer.auth), 404)


@pytest.mark.parametrize("message", ["", "   ", "x" * 501, " " + "y" * 501 + " "])
async def test_chat_length_rules(client, make_user, make_stream, message):
    owner = await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    assert_error(
        await client.post(f"{BASE}/{sid}/chat", json={"message": message}, headers=owner.auth),
        422,
        "validation_error",
    )
    assert (await client.get(f"{BASE}/{sid}/chat", headers=owner.auth)).json()["items"] == []


async def test_chat_500_chars_after_trim_is_accepted(client, make_user, make_stream):
    owner = await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    r = await client.post(
        f"{BASE}/{sid}/chat", json={"message": "  " + "z" * 500 + "  "}, headers=owner.auth
    )
    assert r.status_code == 201 and len(r.json()["message"]) == 500


async def test_chat_rate_limit_gives_429_with_retry_after(client, make_user, make_stream, settings):
    owner = await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    n = settings.chat_burst + 50  # far more than the bucket refills while they arrive
    t0 = time.monotonic()
    rs = await asyncio.gather(
        *[
            client.post(f"{BASE}/{sid}/chat", json={"message": f"m{i}"}, headers=owner.auth)
            for i in range(n)
        ]
    )
    elapsed = time.monotonic() - t0
    statuses = [r.status_code for r in rs]
    assert set(statuses) <= {201, 429}
    ok = statuses.count(201)
    assert settings.chat_burst <= ok <= settings.chat_burst + settings.chat_rate_per_s * elapsed + 1
    for r in rs:
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"]["code"] == "rate_limited"
    stored = (await client.get(f"{BASE}/{sid}/chat?limit=100", headers=owner.auth)).json()["items"]
    assert len(stored) == ok  # refused messages are not stored


async def test_moderated_chat_hidden_from_others(client, make_user, make_stream):
    owner, author, other = await make_user(), await make_user(), await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    clean = await client.post(
        f"{BASE}/{sid}/chat", json={"message": "what a lovely stream"}, headers=author.auth
    )
    bad = await client.post(
        f"{BASE}/{sid}/chat", json={"message": "you are a fucking idiot"}, headers=author.auth
    )
    assert clean.json()["is_moderated"] is False and clean.json()["moderation_score"] < 0.5
    assert bad.status_code == 201 and bad.json()["is_moderated"] is True
    seen_by_other = {
        m["id"]
        for m in (await client.get(f"{BASE}/{sid}/chat", headers=other.auth)).json()["items"]
    }
    seen_anon = {m["id"] for m in (await client.get(f"{BASE}/{sid}/chat")).json()["items"]}
    seen_author = {
        m["id"]
        for m in (await client.get(f"{BASE}/{sid}/chat", headers=author.auth)).json()["items"]
    }
    seen_owner = {
        m["id"]
        for m in (await client.get(f"{BASE}/{sid}/chat", headers=owner.auth)).json()["items"]
    }
    assert seen_by_other == seen_anon == {clean.json()["id"]}
    assert seen_author == seen_owner == {clean.json()["id"], bad.json()["id"]}
    events = (await client.get(f"{BASE}/{sid}/events", headers=other.auth)).json()["items"]
    mod = [e for e in events if e["type"] == "moderation_action"]
    assert len(mod) == 1 and mod[0]["data"]["messageId"] == bad.json()["id"]
    assert "idiot" not in str(events)
    a = (await client.get(f"{BASE}/{sid}/analytics", headers=owner.auth)).json()
    assert a["chat_messages"] == 2 and a["moderated_messages"] == 1


async def test_delete_chat_by_author_or_owner(client, make_user, make_stream):
    owner, author, other = await make_user(), await make_user(), await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    m1 = (
        await client.post(f"{BASE}/{sid}/chat", json={"message": "one"}, headers=author.auth)
    ).json()
    m2 = (
        await client.post(f"{BASE}/{sid}/chat", json={"message": "two"}, headers=author.auth)
    ).json()
    assert_error(
        await client.delete(f"{BASE}/{sid}/chat/{m1['id']}", headers=other.auth),
        404,
        "message_not_found",
    )
    assert_error(await client.delete(f"{BASE}/{sid}/chat/{m1['id']}"), 401)
    r = await client.delete(f"{BASE}/{sid}/chat/{m1['id']}", headers=author.auth)
    assert r.status_code == 200 and r.json()["is_deleted"] is True
    r = await client.delete(f"{BASE}/{sid}/chat/{m2['id']}", headers=owner.auth)
    assert r.status_code == 200 and r.json()["is_deleted"] is True
    assert (await client.get(f"{BASE}/{sid}/chat", headers=other.auth)).json()["items"] == []
    assert_error(await client.delete(f"{BASE}/{sid}/chat/{uuid.uuid4()}", headers=owner.auth), 404)


async def test_chat_history_pages_newest_first(client, make_user, make_stream):
    owner = await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    sent = []
    for i in range(7):
        sent.append(
            (
                await client.post(
                    f"{BASE}/{sid}/chat", json={"message": f"n{i}"}, headers=owner.auth
                )
            ).json()["id"]
        )
    got, before = [], None
    while True:
        url = f"{BASE}/{sid}/chat?limit=3" + (f"&before={before}" if before else "")
        page = (await client.get(url)).json()
        got += [m["id"] for m in page["items"]]
        before = page["next_cursor"]
        if before is None:
            break
    assert got == list(reversed(sent))


@pytest.mark.parametrize(
    ("reaction", "ok"),
    [
        ("🔥", True),
        ("❤️", True),
        ("👍", True),
        (":party_parrot:", True),
        (":a:", True),
        (":" + "x" * 32 + ":", True),
        (":" + "x" * 33 + ":", False),
        ("🦄", True),  # any emoji, not a fixed list
        ("lol", False),
        ("", False),
        (":Upper:", False),
        (":has space:", False),
    ],
)
async def test_reaction_rules(client, make_user, make_stream, reaction, ok):
    owner = await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    r = await client.post(f"{BASE}/{sid}/reaction", json={"reaction": reaction}, headers=owner.auth)
    if ok:
        assert r.status_code == 201 and r.json()["reaction"] == reaction
    else:
        assert_error(r, 422, "validation_error")


async def test_reactions_rate_limited_and_counted(client, make_user, make_stream, settings):
    owner = await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    rs = await asyncio.gather(
        *[
            client.post(f"{BASE}/{sid}/reaction", json={"reaction": "🔥"}, headers=owner.auth)
            for _ in range(settings.reaction_burst + 60)
        ]
    )
    ok = sum(r.status_code == 201 for r in rs)
    assert ok >= settings.reaction_burst and any(r.status_code == 429 for r in rs)
    a = (await client.get(f"{BASE}/{sid}/analytics", headers=owner.auth)).json()
    assert a["reactions"] == {"🔥": ok} and a["reaction_total"] == ok


async def test_events_since_cursor(client, make_user, make_stream):
    owner, viewer = await make_user(), await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    await client.post(f"{BASE}/{sid}/join", headers=viewer.auth)
    first = (await client.get(f"{BASE}/{sid}/events")).json()
    assert [e["type"] for e in first["items"]] == ["stream_started", "viewer_joined"]
    await client.post(f"{BASE}/{sid}/chat", json={"message": "hey"}, headers=viewer.auth)
    await client.post(f"{BASE}/{sid}/reaction", json={"reaction": "👏"}, headers=viewer.auth)
    await client.post(f"{BASE}/{sid}/leave", headers=viewer.auth)
    nxt = (await client.get(f"{BASE}/{sid}/events?since={first['next_cursor']}")).json()
    assert [e["type"] for e in nxt["items"]] == ["chat_message", "reaction", "viewer_left"]
    assert nxt["items"][0]["data"]["message"] == "hey"
    only = (await client.get(f"{BASE}/{sid}/events?type=reaction")).json()["items"]
    assert [e["data"]["reaction"] for e in only] == ["👏"]
    page = (await client.get(f"{BASE}/{sid}/events?limit=2")).json()
    assert len(page["items"]) == 2 and page["next_cursor"] == page["items"][-1]["id"]
    assert_error(await client.get(f"{BASE}/{sid}/events?since=-1"), 422)


async def test_analytics_owner_only(client, make_user, make_stream):
    owner, other = await make_user(), await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    assert_error(
        await client.get(f"{BASE}/{sid}/analytics", headers=other.auth), 403, "not_stream_owner"
    )
    assert_error(await client.get(f"{BASE}/{sid}/analytics"), 401)


async def test_analytics_engagement_and_rate(client, make_user, make_stream):
    owner = await make_user()
    viewers = [await make_user() for _ in range(4)]
    sid = (await make_stream(owner, start=True))["id"]
    for v in viewers:
        await client.post(f"{BASE}/{sid}/join", headers=v.auth)
    await client.post(f"{BASE}/{sid}/chat", json={"message": "a"}, headers=viewers[0].auth)
    await client.post(f"{BASE}/{sid}/chat", json={"message": "b"}, headers=viewers[0].auth)
    await client.post(f"{BASE}/{sid}/reaction", json={"reaction": "😂"}, headers=viewers[1].auth)
    a = (await client.get(f"{BASE}/{sid}/analytics", headers=owner.auth)).json()
    assert a["unique_viewers"] == 4 and a["current_viewers"] == 4
    assert a["engagement_rate"] == 0.5  # 2 of 4 viewers engaged
    assert a["chat_messages"] == 2 and a["reactions"] == {"😂": 1}


async def test_report_once_per_user(client, make_user, make_stream):
    owner, viewer = await make_user(), await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    r = await client.post(
        f"{BASE}/{sid}/report", json={"reason": "spam", "details": "ads"}, headers=viewer.auth
    )
    assert r.status_code == 201 and r.json()["reason"] == "spam"
    assert_error(
        await client.post(f"{BASE}/{sid}/report", json={"reason": "spam"}, headers=viewer.auth),
        409,
        "already_reported",
    )
    assert_error(
        await client.post(f"{BASE}/{sid}/report", json={"reason": "boring"}, headers=viewer.auth),
        422,
    )
    events = (await client.get(f"{BASE}/{sid}/events?type=report", headers=owner.auth)).json()[
        "items"
    ]
    assert len(events) == 1 and events[0]["data"]["reason"] == "spam"
    # reports are the owner's business (sql/0005): others do not get the event
    assert (await client.get(f"{BASE}/{sid}/events?type=report")).json()["items"] == []


async def test_invite_rules(client, make_user, make_stream):
    owner, guest, other = await make_user(), await make_user(), await make_user()
    sid = (await make_stream(owner, privacy="private"))["id"]
    assert_error(
        await client.post(
            f"{BASE}/{sid}/invite", json={"userId": str(other.id)}, headers=guest.auth
        ),
        404,
    )  # cannot even see it
    assert_error(
        await client.post(
            f"{BASE}/{sid}/invite", json={"userId": str(uuid.uuid4())}, headers=owner.auth
        ),
        404,
        "user_not_found",
    )
    assert_error(
        await client.post(
            f"{BASE}/{sid}/invite", json={"userId": str(owner.id)}, headers=owner.auth
        ),
        422,
    )
    assert_error(
        await client.post(f"{BASE}/{sid}/invite", json={"userId": "nope"}, headers=owner.auth), 422
    )
    r = await client.post(
        f"{BASE}/{sid}/invite", json={"userId": str(guest.id)}, headers=owner.auth
    )
    assert r.status_code == 201 and r.json()["new"] is True
    r = await client.post(
        f"{BASE}/{sid}/invite", json={"userId": str(guest.id)}, headers=owner.auth
    )
    assert r.status_code == 201 and r.json()["new"] is False
    assert (await client.get(f"{BASE}/{sid}", headers=guest.auth)).status_code == 200
    assert_error(
        await client.post(
            f"{BASE}/{sid}/invite", json={"userId": str(other.id)}, headers=guest.auth
        ),
        403,
        "not_stream_owner",
    )


async def test_friend_request_and_accept(client, make_user):
    a, b = await make_user(), await make_user()
    assert_error(await client.post(f"/api/friends/{a.id}", headers=a.auth), 422)
    assert_error(
        await client.post(f"/api/friends/{uuid.uuid4()}", headers=a.auth), 404, "user_not_found"
    )
    assert_error(await client.post(f"/api/friends/{b.id}/accept", headers=b.auth), 422)
    r = await client.post(f"/api/friends/{b.id}", headers=a.auth)
    assert r.status_code == 201 and r.json()["status"] == "pending"
    assert_error(
        await client.post(f"/api/friends/{b.id}/accept", headers=a.auth), 404, "request_not_found"
    )
    r = await client.post(f"/api/friends/{a.id}/accept", headers=b.auth)
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    r = await client.post(f"/api/friends/{b.id}", headers=a.auth)
    assert r.json()["status"] == "accepted"
    assert_error(await client.post(f"/api/friends/{b.id}"), 401)


async def test_mutual_requests_become_friends(client, make_user):
    a, b = await make_user(), await make_user()
    await client.post(f"/api/friends/{b.id}", headers=a.auth)
    r = await client.post(f"/api/friends/{a.id}", headers=b.auth)
    assert r.json()["status"] == "accepted"
