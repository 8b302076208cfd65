"""The privacy matrix: public / friends / private × owner / friend / invitee / stranger /
anonymous, for every read over HTTP — and again in SQL under the application role with
Python bypassed, to prove the database itself enforces it."""

from __future__ import annotations

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
