"""Trust and safety (issue 14, sql/0006): who may appoint moderators, ban, delete
messages, work the report queue and read the audit log, over HTTP and again in SQL as
the application role; a ban cuts an open SSE connection; a report resolved as
end_stream ends the stream, withholds its VOD and is audited; suspended broadcasters
do not go live; the audit log cannot be changed; NSFW listings need the opt-in.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import uuid
from typing import Any

import jwt
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from lumalive.db import set_actor
from tests.utils.api import BASE, Person, assert_error
from tests.utils.cli import run_cli
from tests.utils.rtmp import RawRtmp
from tests.utils.sse import SSE

ROLES = ["owner", "smod", "pmod", "viewer", "banned", "stranger", "anon"]


def _dsn(settings) -> str:
    return settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)


async def _as_superuser(settings, sql: str, *params: Any) -> list:
    async with await psycopg.AsyncConnection.connect(_dsn(settings)) as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchall() if cur.description else []


async def _new_stream(client, owner: Person, *, start: bool = True, **config: Any) -> dict:
    body = {"title": "trust and safety", **config}
    r = await client.post(f"{BASE}/create", json=body, headers=owner.auth)
    assert r.status_code == 201, r.text
    stream = r.json()
    if start:
        r = await client.post(f"{BASE}/start/{stream['id']}", headers=owner.auth)
        assert r.status_code == 200, r.text
    return stream


def _h(people: dict[str, Person], role: str) -> dict[str, str]:
    return {} if role == "anon" else people[role].auth


@pytest.fixture(scope="module")
async def world(client, make_user, settings) -> dict[str, Any]:
    """A live public stream with its owner, a stream moderator, a platform moderator,
    a viewer, a user banned from it and a stranger."""
    people = {r: await make_user(r) for r in ROLES if r != "anon"}
    stream = await _new_stream(client, people["owner"])
    sid = stream["id"]
    own = people["owner"].auth
    r = await client.post(
        f"{BASE}/{sid}/moderators", json={"userId": str(people["smod"].id)}, headers=own
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{BASE}/{sid}/bans",
        json={"userId": str(people["banned"].id), "reason": "spam"},
        headers=own,
    )
    assert r.status_code == 201, r.text
    await _as_superuser(
        settings, "INSERT INTO platform_moderators (user_id) VALUES (%s)", people["pmod"].id
    )
    return {"people": people, "sid": sid, "stream": stream}


# -- over HTTP ----------------------------------------------------------------------

FORBIDDEN = {"anon": (401, None), "banned": (403, "banned_from_stream")}


def _expect(table: dict[str, tuple[int, str | None]], role: str, ok: int, default: tuple):
    if role in table:
        return table[role]
    return (ok, None) if ok else default


@pytest.mark.parametrize("role", ROLES)
async def test_http_appoint_and_remove_moderators(client, world, make_user, role):
    people, sid = world["people"], world["sid"]
    target = await make_user("target")
    status, code = _expect(
        FORBIDDEN, role, 201 if role == "owner" else 0, (403, "not_stream_owner")
    )
    r = await client.post(
        f"{BASE}/{sid}/moderators", json={"userId": str(target.id)}, headers=_h(people, role)
    )
    if status >= 400:
        assert_error(r, status, code)
        # the owner appoints, so the others can be refused removing
        r = await client.post(
            f"{BASE}/{sid}/moderators",
            json={"userId": str(target.id)},
            headers=people["owner"].auth,
        )
        assert r.status_code == 201, r.text
    else:
        assert r.status_code == status and r.json()["new"] is True, r.text
    r = await client.delete(f"{BASE}/{sid}/moderators/{target.id}", headers=_h(people, role))
    if status >= 400:
        assert_error(r, status, code)
    else:
        assert r.status_code == 200 and r.json()["moderator"] is False, r.text
    mods = await client.get(f"{BASE}/{sid}/moderators", headers=people["viewer"].auth)
    listed = {m["user_id"] for m in mods.json()["items"]}
    assert str(people["smod"].id) in listed
    assert (str(target.id) in listed) == (status >= 400)


@pytest.mark.parametrize("role", ROLES)
async def test_http_ban_and_lift(client, world, make_user, role):
    people, sid = world["people"], world["sid"]
    target = await make_user("target")
    may = role in ("owner", "smod")
    status, code = _expect(FORBIDDEN, role, 201 if may else 0, (403, "not_stream_moderator"))
    body = {"userId": str(target.id), "minutes": 5, "reason": "calm down"}
    r = await client.post(f"{BASE}/{sid}/bans", json=body, headers=_h(people, role))
    if status >= 400:
        assert_error(r, status, code)
        r = await client.post(f"{BASE}/{sid}/bans", json=body, headers=people["owner"].auth)
        assert r.status_code == 201, r.text
    else:
        assert r.status_code == 201 and r.json()["kind"] == "timeout", r.text
    bans = await client.get(f"{BASE}/{sid}/bans", headers=_h(people, role))
    if role in ("owner", "smod", "pmod"):
        assert str(target.id) in {b["user_id"] for b in bans.json()["items"]}, bans.text
    else:
        assert bans.status_code in (401, 403), bans.text
    r = await client.delete(f"{BASE}/{sid}/bans/{target.id}", headers=_h(people, role))
    if may:
        assert r.status_code == 200 and r.json()["lifted"] is True, r.text
    else:
        assert_error(r, *_expect(FORBIDDEN, role, 0, (403, "not_stream_moderator")))


async def test_http_bans_that_are_not_allowed(client, world):
    people, sid = world["people"], world["sid"]
    smod = people["smod"].auth
    r = await client.post(
        f"{BASE}/{sid}/bans", json={"userId": str(people["owner"].id)}, headers=smod
    )
    assert_error(r, 403, "ban_not_allowed")  # never the owner
    r = await client.post(
        f"{BASE}/{sid}/bans", json={"userId": str(people["smod"].id)}, headers=smod
    )
    assert_error(r, 422, "invalid_ban")  # not yourself
    r = await client.post(
        f"{BASE}/{sid}/bans", json={"userId": str(uuid.uuid4())}, headers=people["owner"].auth
    )
    assert_error(r, 404, "user_not_found")
    r = await client.post(
        f"{BASE}/{sid}/bans", json={"userId": str(people["viewer"].id), "minutes": 0}, headers=smod
    )
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("role", ROLES)
async def test_http_delete_any_message(client, world, make_user, role):
    """Owner, stream moderators and platform moderators delete anyone's message."""
    people, sid = world["people"], world["sid"]
    author = await make_user("author")
    r = await client.post(f"{BASE}/{sid}/chat", json={"message": "hello"}, headers=author.auth)
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    r = await client.delete(f"{BASE}/{sid}/chat/{mid}", headers=_h(people, role))
    if role in ("owner", "smod", "pmod"):
        assert r.status_code == 200 and r.json()["is_deleted"] is True, r.text
        log = await client.get(
            "/api/moderation/audit", params={"stream_id": sid}, headers=people["pmod"].auth
        )
        assert any(
            a["action"] == "message_deleted"
            and a["message_id"] == mid
            and a["actor_id"] == str(people[role].id)
            for a in log.json()["items"]
        ), log.text
    else:
        assert_error(r, *_expect(FORBIDDEN, role, 0, (404, "message_not_found")))


@pytest.mark.parametrize("role", ROLES)
async def test_http_report_queue_and_resolve(client, world, make_user, role):
    people, sid = world["people"], world["sid"]
    reporter = await make_user("reporter")
    r = await client.post(
        f"{BASE}/{sid}/report",
        json={"reason": "spam", "details": f"by {role}"},
        headers=reporter.auth,
    )
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    queue = await client.get(
        "/api/moderation/reports", params={"status": "open"}, headers=_h(people, role)
    )
    resolve = await client.post(
        f"/api/moderation/reports/{rid}/resolve",
        json={"action": "dismiss"},
        headers=_h(people, role),
    )
    if role == "pmod":
        assert queue.status_code == 200, queue.text
        item = next(i for i in queue.json()["items"] if i["id"] == rid)
        assert item["reporter"]["id"] == str(reporter.id) and item["details"] == "by pmod"
        assert item["stream"]["id"] == sid and item["stream"]["status"] == "live"
        assert isinstance(item["flagged_segments"], list)
        assert isinstance(item["moderated_messages"], list)
        assert resolve.status_code == 200 and resolve.json()["resolution"] == "dismiss", (
            resolve.text
        )
        again = await client.post(
            f"/api/moderation/reports/{rid}/resolve",
            json={"action": "warn"},
            headers=_h(people, role),
        )
        assert_error(again, 409, "report_resolved")
    else:
        want = (401, None) if role == "anon" else (403, "not_platform_moderator")
        assert_error(queue, *want)
        assert_error(resolve, *want)


@pytest.mark.parametrize("role", ROLES)
async def test_http_audit_log_readers(client, world, role):
    people, sid = world["people"], world["sid"]
    r = await client.get(
        "/api/moderation/audit", params={"stream_id": sid}, headers=_h(people, role)
    )
    if role == "anon":
        assert_error(r, 401)
        return
    actions = {a["action"] for a in r.json()["items"]}
    if role in ("owner", "pmod"):
        assert {"moderator_appointed", "user_banned"} <= actions, r.text
    else:
        assert actions == set(), r.text


async def test_http_banned_user_is_refused_everywhere(client, world):
    people, sid = world["people"], world["sid"]
    banned = people["banned"].auth
    for method, path, body in [
        ("POST", f"{BASE}/{sid}/join", None),
        ("POST", f"{BASE}/{sid}/chat", {"message": "hi"}),
        ("POST", f"{BASE}/{sid}/reaction", {"reaction": "🔥"}),
        ("GET", f"{BASE}/{sid}", None),
        ("GET", f"{BASE}/{sid}/events/stream", None),
    ]:
        r = await client.request(method, path, json=body, headers=banned)
        err = assert_error(r, 403, "banned_from_stream")
        assert "spam" in err["message"]  # the reason
    r = await client.post(f"{BASE}/{sid}/join", headers=people["viewer"].auth)
    assert r.status_code == 200, r.text


async def test_http_timeout_bars_chat_until_lifted(client, world, make_user):
    people, sid = world["people"], world["sid"]
    loud = await make_user("loud")
    r = await client.post(
        f"{BASE}/{sid}/bans",
        json={"userId": str(loud.id), "minutes": 10, "reason": "caps lock"},
        headers=people["smod"].auth,
    )
    assert r.status_code == 201 and r.json()["until"], r.text
    err = assert_error(
        await client.post(f"{BASE}/{sid}/chat", json={"message": "HEY"}, headers=loud.auth),
        403,
        "timed_out",
    )
    assert "caps lock" in err["message"] and r.json()["until"][:16] in err["message"]
    assert_error(
        await client.post(f"{BASE}/{sid}/reaction", json={"reaction": "🔥"}, headers=loud.auth),
        403,
        "timed_out",
    )
    assert (await client.post(f"{BASE}/{sid}/join", headers=loud.auth)).status_code == 200
    r = await client.delete(f"{BASE}/{sid}/bans/{loud.id}", headers=people["smod"].auth)
    assert r.status_code == 200, r.text
    r = await client.post(f"{BASE}/{sid}/chat", json={"message": "sorry"}, headers=loud.auth)
    assert r.status_code == 201, r.text


# -- in SQL, as the application role ----------------------------------------------------


async def _attempt(db, user: uuid.UUID | None, sql: str, **params: Any) -> int | str:
    """Rows affected or returned, or the error; always rolled back."""
    async with db.engine.connect() as conn:
        trans = await conn.begin()
        try:
            await set_actor(conn, user)
            result = await conn.execute(text(sql), params)
            return len(result.fetchall()) if result.returns_rows else result.rowcount
        except DBAPIError as e:
            return f"error: {e.orig}"
        finally:
            await trans.rollback()


def _ok(outcome: int | str) -> bool:
    return isinstance(outcome, int) and outcome > 0


async def test_sql_matrix_under_the_app_role(db, client, world, make_user):
    people, sid = world["people"], world["sid"]
    author = await make_user("author")
    r = await client.post(f"{BASE}/{sid}/chat", json={"message": "sql"}, headers=author.auth)
    mid = r.json()["id"]
    rep = await make_user("reporter")
    r = await client.post(f"{BASE}/{sid}/report", json={"reason": "other"}, headers=rep.auth)
    rid = r.json()["id"]
    target = await make_user("target")
    expect = {
        # action: roles it succeeds for
        "appoint": {"owner"},
        "remove_moderator": {"owner"},
        "ban": {"owner", "smod"},
        "lift": {"owner", "smod"},
        "delete_message": {"owner", "smod", "pmod"},
        "queue": {"pmod"},
        "resolve": {"pmod"},
        "audit_read": {"owner", "pmod"},
        "bans_read": {"owner", "smod", "pmod", "banned"},  # the banned user: their own
    }
    sqls = {
        "appoint": (
            "INSERT INTO stream_moderators (stream_id, user_id, appointed_by)"
            " VALUES (:s, :t, app_user_id())"
        ),
        "ban": (
            "INSERT INTO stream_bans (stream_id, user_id, banned_by) VALUES (:s, :t, app_user_id())"
        ),
        "lift": "DELETE FROM stream_bans WHERE stream_id = :s AND user_id = :b",
        "remove_moderator": "DELETE FROM stream_moderators WHERE stream_id = :s AND user_id = :sm",
        "delete_message": "UPDATE live_stream_chat SET is_deleted = true WHERE id = :m",
        "queue": "SELECT * FROM report_queue('open', 100)",
        "resolve": "SELECT * FROM resolve_report(:r, 'dismiss', '')",
        "audit_read": "SELECT 1 FROM moderation_audit WHERE stream_id = :s",
        "bans_read": "SELECT 1 FROM stream_bans WHERE stream_id = :s",
    }
    params = {
        "s": sid,
        "t": target.id,
        "b": people["banned"].id,
        "sm": people["smod"].id,
        "m": mid,
        "r": rid,
    }
    for action, sql in sqls.items():
        for role in ROLES:
            user = None if role == "anon" else people[role].id
            used = {k: v for k, v in params.items() if re.search(f":{k}\\b", sql)}
            outcome = await _attempt(db, user, sql, **used)
            assert _ok(outcome) == (role in expect[action]), (action, role, outcome)
    # whoever: never write the audit log by hand, never change it; nor grant roles
    for role in ROLES:
        user = None if role == "anon" else people[role].id
        for sql in (
            "INSERT INTO moderation_audit (action) VALUES ('forged')",
            "UPDATE moderation_audit SET action = 'changed'",
            "DELETE FROM moderation_audit",
            "SELECT audit('forged', NULL, NULL, NULL, NULL, '{}')",
            "INSERT INTO suspended_users (user_id) VALUES (app_user_id())",
            "INSERT INTO platform_moderators (user_id) VALUES (app_user_id())",
        ):
            outcome = await _attempt(db, user, sql)
            assert isinstance(outcome, str) and "permission denied" in outcome, (role, sql)


async def test_sql_banned_and_unopted_inserts_are_refused(db, client, world, make_user):
    people, sid = world["people"], world["sid"]
    rows = {
        "viewer": "INSERT INTO live_stream_viewers (stream_id, user_id) VALUES (:s, app_user_id())",
        "chat": "INSERT INTO live_stream_chat (stream_id, user_id, message)"
        " VALUES (:s, app_user_id(), 'x')",
        "reaction": "INSERT INTO live_stream_reactions (stream_id, user_id, reaction)"
        " VALUES (:s, app_user_id(), 'x')",
    }
    stranger = await make_user("fresh")
    for kind, sql in rows.items():
        assert _ok(await _attempt(db, stranger.id, sql, s=sid)), kind
        refused = await _attempt(db, people["banned"].id, sql, s=sid)
        assert "row-level security" in str(refused), (kind, refused)
    # NSFW: the owner and opted-in users only
    nsfw = await _new_stream(client, people["owner"], isNSFW=True)
    assert "row-level security" in str(
        await _attempt(db, stranger.id, rows["viewer"], s=nsfw["id"])
    )
    r = await client.put("/api/me/settings", json={"showNSFW": True}, headers=stranger.auth)
    assert r.status_code == 200 and r.json()["showNSFW"] is True, r.text
    assert _ok(await _attempt(db, stranger.id, rows["viewer"], s=nsfw["id"]))


async def test_sql_audit_log_refuses_even_its_owner(db, settings, world):
    for sql in (
        "UPDATE moderation_audit SET action = 'changed'",
        "DELETE FROM moderation_audit",
        "TRUNCATE moderation_audit",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            await _as_superuser(settings, sql)
    rows = await _as_superuser(settings, "SELECT count(*) FROM moderation_audit")
    assert rows[0][0] > 0


# -- a ban on an open connection -------------------------------------------------------


async def test_ban_ends_open_sse_within_a_second(client, world, make_user):
    people, sid = world["people"], world["sid"]
    troll, bystander = await make_user("troll"), await make_user("bystander")
    async with SSE(client, sid, troll.auth) as sse, SSE(client, sid, bystander.auth) as other:
        assert sse.status == 200 and other.status == 200
        await sse.next()  # the first frame: the connection is live
        await other.next()
        banned_at = time.monotonic()  # from the request: the cut may come before the answer
        r = await client.post(
            f"{BASE}/{sid}/bans", json={"userId": str(troll.id)}, headers=people["smod"].auth
        )
        assert r.status_code == 201, r.text
        while (frame := await sse.next(timeout=2.0)) is not None:
            pass  # anything sent before the cut
        took = time.monotonic() - banned_at
        assert took < 1.0, f"the banned user's SSE stayed open {took:.2f} s"
        print(f"ban request -> the banned user's SSE closed in {took * 1000:.0f} ms")
        # the bystander's connection goes on: it still gets chat
        await client.post(
            f"{BASE}/{sid}/chat", json={"message": "still here"}, headers=bystander.auth
        )
        frame = await other.until(
            lambda f: f.get("event") == "chat_message" or "still here" in str(f)
        )
        assert frame is not None
    async with SSE(client, sid, troll.auth) as again:
        assert again.status == 403


async def test_ban_ends_open_websocket_within_a_second(client, db, settings, world, make_user):
    """...and closes the banned user's viewing."""
    people, sid = world["people"], world["sid"]
    troll = await make_user("troll")
    assert (await client.post(f"{BASE}/{sid}/join", headers=troll.auth)).status_code == 200
    url = f"ws://{settings.api_host}:{settings.api_port}{BASE}/{sid}/ws?access_token={troll.token}"
    async with ws_connect(url) as ws:
        await asyncio.wait_for(ws.recv(), 10)  # the first message: the connection is live
        banned_at = time.monotonic()
        r = await client.post(
            f"{BASE}/{sid}/bans", json={"userId": str(troll.id)}, headers=people["owner"].auth
        )
        assert r.status_code == 201, r.text
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 2.0)
        took = time.monotonic() - banned_at
        assert took < 1.0, f"the banned user's WebSocket stayed open {took:.2f} s"
        print(f"ban request -> the banned user's WebSocket closed in {took * 1000:.0f} ms")
    async with db.acting(troll.id) as conn:
        open_viewings = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM live_stream_viewers"
                    " WHERE stream_id = :s AND user_id = app_user_id() AND left_at IS NULL"
                ),
                {"s": sid},
            )
        ).scalar()
    assert open_viewings == 0
    async with ws_connect(url) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["error"]["code"] == "banned_from_stream"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4403


# -- the report queue acts ---------------------------------------------------------------


async def _add_rendition(db, owner: Person, sid: str) -> None:
    async with db.acting(owner.id) as conn:
        await conn.execute(
            text(
                "INSERT INTO stream_renditions (stream_id, name, position, width, height,"
                " frame_rate, video_codec, video_kbps, audio_kbps, bandwidth,"
                " average_bandwidth, codecs)"
                " VALUES (:s, '360p', 0, 640, 360, 30, 'h264', 800, 96, 1000000, 900000,"
                " 'avc1.64001e,mp4a.40.2')"
            ),
            {"s": sid},
        )


async def test_report_resolved_as_end_stream_ends_it_and_is_audited(client, db, world, make_user):
    people = world["people"]
    owner, viewer, pmod = await make_user("owner"), await make_user("viewer"), people["pmod"]
    stream = await _new_stream(client, owner)
    sid = stream["id"]
    await _add_rendition(db, owner, sid)
    master = f"{BASE}/{sid}/hls/master.m3u8"
    assert (await client.get(master, headers=viewer.auth)).status_code == 200
    r = await client.post(f"{BASE}/{sid}/report", json={"reason": "violence"}, headers=viewer.auth)
    rid = r.json()["id"]
    async with SSE(client, sid, viewer.auth) as sse:
        await sse.next()
        r = await client.post(
            f"/api/moderation/reports/{rid}/resolve",
            json={"action": "end_stream", "note": "graphic"},
            headers=pmod.auth,
        )
        assert r.status_code == 200, r.text
        assert r.json()["status_before"] == "live"
        ended = await sse.until(lambda f: f.get("event") == "stream_ended", timeout=5)
        assert "policy_violation" in str(ended["data"])
    s = (await client.get(f"{BASE}/{sid}", headers=owner.auth)).json()
    assert s["status"] == "ended" and s["end_reason"] == "policy_violation"
    assert_error(
        await client.post(f"{BASE}/{sid}/chat", json={"message": "hi"}, headers=viewer.auth),
        409,
        "stream_not_live",
    )
    log = (
        await client.get("/api/moderation/audit", params={"stream_id": sid}, headers=pmod.auth)
    ).json()["items"]
    by_action = {a["action"]: a for a in log}
    assert by_action["report_resolved"]["report_id"] == rid
    assert by_action["report_resolved"]["details"] == {"action": "end_stream", "note": "graphic"}
    assert by_action["stream_ended"]["details"]["reason"] == "policy_violation"
    assert by_action["stream_ended"]["actor_id"] == str(pmod.id)
    # its VOD: withheld from viewers, kept for its owner and platform moderators
    assert_error(await client.get(master, headers=viewer.auth), 404)
    assert (await client.get(master, headers=owner.auth)).status_code == 200
    assert (await client.get(master, headers=pmod.auth)).status_code == 200
    queue = await client.get(
        "/api/moderation/reports", params={"status": "resolved"}, headers=pmod.auth
    )
    item = next(i for i in queue.json()["items"] if i["id"] == rid)
    assert item["resolution"] == "end_stream" and item["resolved_by"] == str(pmod.id)


async def test_suspend_refuses_going_live(client, db, settings, world, make_user):
    pmod = world["people"]["pmod"]
    owner, reporter = await make_user("owner"), await make_user("reporter")
    stream = await _new_stream(client, owner)
    r = await client.post(
        f"{BASE}/{stream['id']}/report", json={"reason": "hate"}, headers=reporter.auth
    )
    r = await client.post(
        f"/api/moderation/reports/{r.json()['id']}/resolve",
        json={"action": "suspend"},
        headers=pmod.auth,
    )
    assert r.status_code == 200, r.text
    s = (await client.get(f"{BASE}/{stream['id']}", headers=owner.auth)).json()
    assert s["status"] == "ended" and s["end_reason"] == "policy_violation"
    fresh = await _new_stream(client, owner, start=False)
    assert_error(
        await client.post(f"{BASE}/start/{fresh['id']}", headers=owner.auth), 403, "suspended"
    )
    # RTMP: the ingest's key lookup finds nothing to publish to
    async with db.acting(None) as conn:
        found = (
            await conn.execute(text("SELECT * FROM stream_for_key(:k)"), {"k": fresh["stream_key"]})
        ).all()
    assert found == []
    rtmp = await RawRtmp.open(settings.rtmp_port)  # a real publish is refused
    try:
        info = await rtmp.publish(fresh["stream_key"])
    finally:
        await rtmp.close()
    assert info["level"] == "error" and info["code"] != "NetStream.Publish.Start", info
    s = (await client.get(f"{BASE}/{fresh['id']}", headers=owner.auth)).json()
    assert s["status"] == "created"
    # and in SQL, as the owner: the status trigger refuses
    outcome = await _attempt(
        db, owner.id, "UPDATE live_streams SET status = 'live' WHERE id = :s", s=fresh["id"]
    )
    assert "suspended" in str(outcome)


# -- roles from outside: the CLI and token claims ---------------------------------------


def _cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, *args)


async def test_cli_grant_moderator(client, settings, make_user):
    person = await make_user("staff")
    queue = "/api/moderation/reports"
    assert_error(await client.get(queue, headers=person.auth), 403, "not_platform_moderator")
    # A name no user has: its own process (seconds), while the grant and revoke run.
    nobody = "nobody-" + uuid.uuid4().hex
    unknown = asyncio.ensure_future(asyncio.to_thread(_cli, settings, "grant-moderator", nobody))
    out = await asyncio.to_thread(_cli, settings, "grant-moderator", person.name)
    assert out.returncode == 0 and "granted" in out.stdout, out.stderr
    assert (await client.get(queue, headers=person.auth)).status_code == 200
    out = await asyncio.to_thread(_cli, settings, "grant-moderator", person.name, "--revoke")
    assert out.returncode == 0 and "revoked" in out.stdout, out.stderr
    assert_error(await client.get(queue, headers=person.auth), 403, "not_platform_moderator")
    out = await unknown
    assert out.returncode == 1 and "no user named" in out.stderr


async def test_token_claim_makes_a_platform_moderator(client, settings):
    def token(sub: uuid.UUID, role: str | None) -> dict[str, str]:
        claims: dict[str, Any] = {
            "sub": str(sub),
            "aud": settings.jwt_audience,
            "exp": int(time.time()) + 300,
        }
        if role:
            claims["app_metadata"] = {"role": role}
        return {
            "Authorization": "Bearer " + jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
        }

    queue = "/api/moderation/reports"
    assert (await client.get(queue, headers=token(uuid.uuid4(), "moderator"))).status_code == 200
    assert_error(await client.get(queue, headers=token(uuid.uuid4(), "editor")), 403)
    assert_error(await client.get(queue, headers=token(uuid.uuid4(), None)), 403)


# -- NSFW gating ------------------------------------------------------------------------


async def test_nsfw_listings_need_the_opt_in(client, db, make_user):
    owner, viewer = await make_user("owner"), await make_user("viewer")
    tag = "ts" + uuid.uuid4().hex[:10]
    declared = await _new_stream(client, owner, isNSFW=True, tags=[tag], title="declared")
    flagged = await _new_stream(client, owner, tags=[tag], title="flagged")
    plain = await _new_stream(client, owner, tags=[tag], title="plain")
    async with db.acting(owner.id) as conn:  # video moderation flagged one of its segments
        await conn.execute(
            text(
                "INSERT INTO segment_moderation (stream_id, source_sequence, max_score, flagged)"
                " VALUES (:s, 0, 0.97, true)"
            ),
            {"s": flagged["id"]},
        )

    async def listed(headers: dict[str, str]) -> dict[str, set[str]]:
        live = await client.get(f"{BASE}/live", params={"tag": tag, "limit": 100}, headers=headers)
        mine = await client.get(f"{BASE}/user/{owner.id}", params={"limit": 100}, headers=headers)
        rec = await client.get(f"{BASE}/recommended", params={"limit": 100}, headers=headers)
        return {
            name: {s["id"] for s in r.json()["items"]}
            for name, r in (("live", live), ("user", mine), ("recommended", rec))
        }

    nsfw = {declared["id"], flagged["id"]}
    for who in ({}, viewer.auth):  # anonymous, and a user who has not opted in
        for where, ids in (await listed(who)).items():
            assert not ids & nsfw, (who, where)
            if where != "recommended":
                assert plain["id"] in ids, where
    own = await listed(owner.auth)
    assert nsfw <= own["live"] and nsfw <= own["user"]  # an owner sees their own
    assert_error(
        await client.post(f"{BASE}/{declared['id']}/join", headers=viewer.auth),
        403,
        "nsfw_opt_in_required",
    )
    assert_error(
        await client.post(f"{BASE}/{flagged['id']}/join", headers=viewer.auth),
        403,
        "nsfw_opt_in_required",
    )
    assert (await client.get("/api/me/settings", headers=viewer.auth)).json()["showNSFW"] is False
    r = await client.put("/api/me/settings", json={"showNSFW": True}, headers=viewer.auth)
    assert r.status_code == 200 and r.json()["nsfwConfirmedAt"], r.text
    after = await listed(viewer.auth)
    assert nsfw <= after["live"] and nsfw <= after["user"] and nsfw <= after["recommended"]
    assert (
        await client.post(f"{BASE}/{declared['id']}/join", headers=viewer.auth)
    ).status_code == 200
    assert not (await listed({}))["live"] & nsfw  # anonymous still never
    assert_error(
        await client.put("/api/me/settings", json={"showNSFW": "yes please"}, headers=viewer.auth),
        422,
    )
    assert_error(await client.put("/api/me/settings", json={"showNSFW": True}), 401)
