"""The privacy matrix: public / friends / private × owner / friend / invitee / stranger /
anonymous, for every read over HTTP — and again in SQL under the application role with
Python bypassed, to prove the database itself enforces it."""

from __future__ import annotations

import json

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.utils.api import BASE

ROLES = ["owner", "friend", "invitee", "stranger", "anonymous"]
# who may see a stream of each privacy
VISIBLE = {
    "public": {"owner", "friend", "invitee", "stranger", "anonymous"},
    "friends": {"owner", "friend"},
    "private": {"owner", "invitee"},
}


@pytest.fixture(scope="module")
async def world(client, make_user):
    """One owner with a friend, an invitee and a stranger; a live stream of each privacy,
    each with one chat message, a reaction and a viewer."""
    owner, friend, invitee, stranger = [
        await make_user(n) for n in ("owner", "friend", "invitee", "stranger")
    ]
    await client.post(f"/api/friends/{owner.id}", headers=friend.auth)
    await client.post(f"/api/friends/{friend.id}/accept", headers=owner.auth)
    streams = {}
    for privacy in VISIBLE:
        s = (
            await client.post(
                f"{BASE}/create",
                json={"title": f"{privacy} stream", "privacy": privacy},
                headers=owner.auth,
            )
        ).json()
        await client.post(
            f"{BASE}/{s['id']}/invite", json={"userId": str(invitee.id)}, headers=owner.auth
        )
        await client.post(f"{BASE}/start/{s['id']}", headers=owner.auth)
        await client.post(f"{BASE}/{s['id']}/join", headers=owner.auth)
        await client.post(
            f"{BASE}/{s['id']}/chat", json={"message": f"hi {privacy}"}, headers=owner.auth
        )
        await client.post(f"{BASE}/{s['id']}/reaction", json={"reaction": "🎉"}, headers=owner.auth)
        streams[privacy] = s["id"]
    people = {
        "owner": owner,
        "friend": friend,
        "invitee": invitee,
        "stranger": stranger,
        "anonymous": None,
    }
    return people, streams


def _headers(person) -> dict[str, str]:
    return person.auth if person else {}


@pytest.mark.parametrize("privacy", list(VISIBLE))
@pytest.mark.parametrize("role", ROLES)
async def test_http_reads_follow_privacy(client, world, privacy, role):
    people, streams = world
    sid, h, allowed = streams[privacy], _headers(people[role]), role in VISIBLE[privacy]
    owner_id = people["owner"].id
    direct = [
        await client.get(f"{BASE}/{sid}", headers=h),
        await client.get(f"{BASE}/{sid}/events", headers=h),
        await client.get(f"{BASE}/{sid}/chat", headers=h),
    ]
    for r in direct:
        if allowed:
            assert r.status_code == 200, r.text
        else:  # never 403: do not reveal that it exists
            assert r.status_code == 404 and r.json()["error"]["code"] == "stream_not_found"
    if allowed:
        assert direct[2].json()["items"][0]["message"] == f"hi {privacy}"
    live_ids = {
        s["id"] for s in (await client.get(f"{BASE}/live?limit=100", headers=h)).json()["items"]
    }
    user_ids = {
        s["id"]
        for s in (await client.get(f"{BASE}/user/{owner_id}?limit=100", headers=h)).json()["items"]
    }
    assert (sid in live_ids) == allowed and (sid in user_ids) == allowed
    if people[role] is not None:  # writes follow the same rule
        r = await client.post(f"{BASE}/{sid}/join", headers=h)
        assert r.status_code == (200 if allowed else 404)
        r = await client.post(f"{BASE}/{sid}/report", json={"reason": "other"}, headers=h)
        assert r.status_code in ((201, 409) if allowed else (404,))


async def _sql_rows(db, user_id, sql: str, **params) -> list:
    async with db.acting(user_id) as conn:
        return (await conn.execute(text(sql), params)).all()


@pytest.mark.parametrize("privacy", list(VISIBLE))
@pytest.mark.parametrize("role", ROLES)
async def test_sql_level_rls_follows_privacy(db, world, privacy, role):
    """Straight SQL as lumalive_app: no Python checks in the way."""
    people, streams = world
    sid, allowed = streams[privacy], role in VISIBLE[privacy]
    uid = people[role].id if people[role] else None
    for table in (
        "live_streams",
        "live_stream_events",
        "live_stream_chat",
        "live_stream_reactions",
    ):
        key = "id" if table == "live_streams" else "stream_id"
        rows = await _sql_rows(db, uid, f"SELECT 1 FROM {table} WHERE {key} = :s", s=sid)
        assert bool(rows) == allowed, (table, role, privacy)
    viewers = await _sql_rows(
        db, uid, "SELECT user_id FROM live_stream_viewers WHERE stream_id = :s", s=sid
    )
    # the viewer list is the owner's business; others see at most their own viewing
    if role == "owner":
        assert uid in {v.user_id for v in viewers}
    else:
        assert {v.user_id for v in viewers} <= {uid}


async def test_sql_app_role_cannot_read_stream_keys_or_bypass(db, world):
    people, streams = world
    owner = people["owner"]
    with pytest.raises(DBAPIError, match="permission denied"):
        await _sql_rows(db, owner.id, "SELECT stream_key FROM live_streams")
    key = (await _sql_rows(db, owner.id, "SELECT owner_stream_key(:s)", s=streams["public"]))[0][0]
    assert key.startswith("live_")
    stranger = (
        await _sql_rows(
            db, people["stranger"].id, "SELECT owner_stream_key(:s)", s=streams["public"]
        )
    )[0][0]
    assert stranger is None
    role = (
        await _sql_rows(
            db,
            None,
            "SELECT current_user, "
            "(SELECT rolbypassrls OR rolsuper FROM pg_roles"
            " WHERE rolname = current_user)",
        )
    )[0]
    assert role == ("lumalive_app", False)


async def test_sql_only_owner_changes_stream(db, world):
    people, streams = world
    for who in ("friend", "invitee", "stranger"):
        async with db.acting(people[who].id) as conn:
            n = (
                await conn.execute(
                    text("UPDATE live_streams SET status = 'ended' WHERE id = :s"),
                    {"s": streams["public"]},
                )
            ).rowcount
        assert n == 0
    with pytest.raises(DBAPIError, match="row-level security"):
        async with db.acting(people["stranger"].id) as conn:
            await conn.execute(
                text(
                    "INSERT INTO live_stream_chat (stream_id, user_id, message)"
                    " VALUES (:s, :u, 'x')"
                ),
                {"s": streams["private"], "u": people["stranger"].id},
            )
    with pytest.raises(DBAPIError, match="row-level security"):  # impersonation
        async with db.acting(people["stranger"].id) as conn:
            await conn.execute(
                text(
                    "INSERT INTO live_stream_chat (stream_id, user_id, message)"
                    " VALUES (:s, :u, 'x')"
                ),
                {"s": streams["public"], "u": people["owner"].id},
            )
    with pytest.raises(DBAPIError, match="row-level security"):
        async with db.acting(people["stranger"].id) as conn:
            await conn.execute(
                text(
                    "INSERT INTO live_streams (user_id, title, quality, bitrate, stream_key)"
                    " VALUES (:u, 't', '1080p', 100, 'k-forged')"
                ),
                {"u": people["owner"].id},
            )


async def test_sql_bitrate_and_quality_constraints(db, make_user):
    user = await make_user()
    for quality, bitrate in [("1080p", 8001), ("4K", 25001), ("720p", 100), ("1080p", 0)]:
        with pytest.raises(DBAPIError, match="check constraint"):
            async with db.acting(user.id) as conn:
                await conn.execute(
                    text(
                        "INSERT INTO live_streams (user_id, title, quality, bitrate, stream_key)"
                        " VALUES (:u, 't', :q, :b, :k)"
                    ),
                    {"u": user.id, "q": quality, "b": bitrate, "k": f"k-{quality}-{bitrate}"},
                )


# --- the database's own guards (sql/0005), as lumalive_app with Python bypassed --------


async def _sql_error(db, user_id, sql: str, **params) -> str:
    with pytest.raises(DBAPIError) as err:
        await _sql_rows(db, user_id, sql, **params)
    return str(err.value.orig)


async def test_sql_nobody_bumps_analytics_by_hand(db, world):
    """0001 let any caller add to any stream's counters (bob took alice's unique
    viewers from 3 to 1,000,003); only the counter triggers may now."""
    people, streams = world
    sid = streams["public"]
    owner = people["owner"].id

    async def counters() -> dict:
        return (await _sql_rows(db, owner, "SELECT owner_analytics(:s)", s=sid))[0][0]

    before = await counters()
    assert before["unique_viewers"] >= 1
    for who in ("stranger", "friend", "owner", "anonymous"):
        uid = people[who].id if people[who] else None
        err = await _sql_error(
            db, uid, "SELECT bump_analytics(:s, '{unique_viewers}', 1000000)", s=sid
        )
        assert "permission denied for function bump_analytics" in err, (who, err)
    assert await counters() == before


async def test_sql_events_are_limited_by_type_and_acting_user(db, world):
    people, streams = world
    sid, owner, bob = streams["public"], people["owner"].id, people["stranger"].id
    insert = (
        "INSERT INTO live_stream_events (stream_id, event_type, event_data)"
        " VALUES (:s, :t, CAST(:d AS jsonb))"
    )
    chat = (
        await _sql_rows(
            db, owner, "SELECT id, message FROM live_stream_chat WHERE stream_id = :s", s=sid
        )
    )[0]
    forged = [
        (bob, "stream_ended", {"reason": "forged", "duration": 0}),  # lifecycle: owner only
        (bob, "stream_started", {"user_id": str(bob)}),
        (bob, "ingest_refused", {"reason": "forged"}),
        (bob, "moderation_action", {"action": "segment_flagged"}),
        (bob, "viewer_joined", {"user_id": str(owner)}),  # as someone else
        (bob, "reaction", {"user_id": str(owner), "reaction": "🔥"}),
        # the owner's real message, claimed by bob, or with words it never had
        (bob, "chat_message", {"message_id": str(chat.id), "user_id": str(bob), "message": "x"}),
        (
            owner,
            "chat_message",
            {"message_id": str(chat.id), "user_id": str(owner), "message": "words never said"},
        ),
        (bob, "report", {"report_id": str(chat.id), "reason": "spam"}),  # no such report
        (bob, "something_new", {}),  # types nobody produces
        (None, "viewer_joined", {}),  # anonymous callers write nothing
    ]
    for who, kind, data in forged:
        err = await _sql_error(db, who, insert, s=sid, t=kind, d=json.dumps(data))
        assert "row-level security" in err, (kind, err)
    # What their own doings produce still goes in: a viewer as themselves, the owner's lifecycle.
    mine = json.dumps({"user_id": str(bob)})
    assert await _sql_rows(db, bob, f"{insert} RETURNING seq", s=sid, t="viewer_joined", d=mine)
    assert await _sql_rows(
        db, owner, f"{insert} RETURNING seq", s=sid, t="ingest_connected", d="{}"
    )


async def test_sql_event_data_and_counters_only_through_their_functions(db, world):
    people, streams = world
    for who in ("owner", "stranger", "anonymous"):
        uid = people[who].id if people[who] else None
        err = await _sql_error(db, uid, "SELECT event_data FROM live_stream_events LIMIT 1")
        assert "permission denied for table live_stream_events" in err
        err = await _sql_error(db, uid, "SELECT analytics FROM live_streams LIMIT 1")
        assert "permission denied for table live_streams" in err
    rows = await _sql_rows(
        db,
        None,
        "SELECT event_type, event_data FROM stream_events(:s, 0, 9223372036854775807, 100)",
        s=streams["public"],
    )
    joined = [data for kind, data in rows if kind == "viewer_joined"]
    assert joined and all(data == {} for data in joined)
    hidden = await _sql_rows(
        db,
        None,
        "SELECT * FROM stream_events(:s, 0, 9223372036854775807, 100)",
        s=streams["private"],
    )
    assert hidden == []  # a stream the caller may not see has no events for them


async def test_sql_functions_are_not_public_and_definers_are_few(db, settings):
    rows = await _superuser_rows(
        settings,
        "SELECT p.proname, p.prosecdef, p.proconfig, p.prorettype = 'trigger'::regtype,"
        " has_function_privilege('lumalive_app', p.oid, 'EXECUTE'),"
        " EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0) OR p.proacl IS NULL"
        " FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace",
    )
    for name, definer, config, trigger, app_may, public_may in rows:
        assert not public_may, name
        if definer:
            assert "lumalive.definer=on" in (config or []), name
        if trigger:
            assert not app_may, name
    app = {name for name, *_, app_may, _ in rows if app_may}
    assert not app & {"bump_analytics", "are_friends", "operator_session"}
    assert {"stream_events", "owner_analytics", "owner_stream_key", "can_view_stream"} <= app
    err = await _sql_error(db, None, "SELECT are_friends(gen_random_uuid(), gen_random_uuid())")
    assert "permission denied" in err


async def test_sql_every_table_forces_row_level_security(settings):
    rows = await _superuser_rows(
        settings,
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
        " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
        " AND relname <> 'alembic_version'",
    )
    assert len(rows) >= 16
    assert [r[0] for r in rows if not (r[1] and r[2])] == []


async def _superuser_rows(settings, sql: str) -> list:
    """As the database's owner, not the app role: for catalog questions."""
    dsn = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        return await (await conn.execute(sql)).fetchall()
