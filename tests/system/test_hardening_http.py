"""Hardening over HTTP against the real system: body limits on chunked uploads, text
Postgres cannot store, forged cursors, quotas, rate limits, realtime connection
caps, deleted users' tokens; and, in-process beside it, an API whose database is
down (503 + Retry-After), without disturbing the system the other tests share."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from lumalive.store import cursor
from serve_app.app import create_app
from tests.utils.api import BASE, assert_error, free_port


def _dsn(settings: Any) -> str:
    """The system's own (superuser) connection, for what no API call may do."""
    return settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def _retry_after(r: httpx.Response) -> int:
    value = int(r.headers["Retry-After"])
    assert value >= 1
    return value


# -- request bodies ---------------------------------------------------------------


async def _chunked(total: int, piece: int = 16 * 1024) -> AsyncIterator[bytes]:
    """A body sent with Transfer-Encoding: chunked, so it declares no length."""
    yield b'{"title": "'
    for _ in range(total // piece):
        yield b"x" * piece
    yield b'"}'


@pytest.mark.parametrize("with_token", [False, True])
async def test_chunked_body_over_the_limit_is_413_and_the_replica_keeps_serving(
    client, settings, make_user, with_token
):
    owner = await make_user()
    headers = {"content-type": "application/json", **(owner.auth if with_token else {})}
    r = await client.post(f"{BASE}/create", content=_chunked(256 * 1024), headers=headers)
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    err = assert_error(r, 413, "payload_too_large")
    assert str(settings.max_body_bytes) in err["message"]
    assert (await client.get("/healthz")).status_code == 200
    r = await client.post(f"{BASE}/create", json={"title": "after"}, headers=owner.auth)
    assert r.status_code == 201
    # a chunked body under the limit is read as usual
    small = _chunked(settings.max_body_bytes // 2)
    r = await client.post(f"{BASE}/create", content=small, headers={**headers, **owner.auth})
    assert_error(r, 422, "validation_error")  # a title of 32 KiB: read, then validated


# -- text Postgres cannot store -----------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"title": "nul\x00title"},
        {"title": "t", "tags": ["fine", "n\x00l"]},
        {"title": "t", "category": "c\x00t"},
        {"title": "t", "description": "\x00"},
        {"title": "t", "aiFeatures": {"\x00": True}},
    ],
)
async def test_nul_in_a_stream_config_is_422(client, make_user, config):
    owner = await make_user()
    r = await client.post(f"{BASE}/create", json=config, headers=owner.auth)
    assert_error(r, 422, "validation_error")
    assert (await client.get(f"{BASE}/user/{owner.id}")).json()["items"] == []


async def test_nul_in_chat_report_and_queries_is_422(client, make_user, make_stream):
    owner = await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    for method, url, body in [
        ("POST", f"{BASE}/{sid}/chat", {"message": "hi\x00there"}),
        ("POST", f"{BASE}/{sid}/report", {"reason": "spam", "details": "\x00"}),
        ("GET", f"{BASE}/live?category=a%00b", None),
        ("GET", f"{BASE}/live?tag=%00", None),
        ("GET", f"{BASE}/{sid}/events?type=chat%00", None),
    ]:
        r = await client.request(method, url, json=body, headers=owner.auth)
        assert_error(r, 422, "validation_error")
    assert (await client.get(f"{BASE}/{sid}/chat", headers=owner.auth)).json()["items"] == []


# -- cursors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        ("yesterday", str(uuid.uuid4())),
        ("2026-01-01T00:00:00+00:00", "not-a-uuid"),
        ("2026-01-01T00:00:00", str(uuid.uuid4())),
        ("2026-02-30T00:00:00+00:00", str(uuid.uuid4())),
        ("2026-01-01T00:00:00+00:00\x00", str(uuid.uuid4())),
        ("99999-01-01T00:00:00+00:00", str(uuid.uuid4())),
    ],
)
async def test_forged_but_well_formed_cursors_are_400(client, make_user, key):
    forged = cursor.encode(*key)
    user = await make_user()
    for url in (f"{BASE}/live?cursor={forged}", f"{BASE}/user/{user.id}?cursor={forged}"):
        assert_error(await client.get(url, headers=user.auth), 400, "invalid_cursor")


# -- quotas -------------------------------------------------------------------------


async def test_one_more_live_stream_than_the_quota_is_429(client, settings, make_user, make_stream):
    owner = await make_user()
    live = [await make_stream(owner, start=True) for _ in range(settings.max_live_streams_per_user)]
    extra = await make_stream(owner)
    r = await client.post(f"{BASE}/start/{extra['id']}", headers=owner.auth)
    assert_error(r, 429, "too_many_live_streams")
    _retry_after(r)
    got = await client.get(f"{BASE}/{extra['id']}", headers=owner.auth)
    assert got.json()["status"] == "created"  # the refusal changed nothing
    other = await make_user()  # the quota is per user
    await make_stream(other, start=True)
    r = await client.post(f"{BASE}/end/{live[0]['id']}", headers=owner.auth)
    assert r.status_code == 200, r.text
    r = await client.post(f"{BASE}/start/{extra['id']}", headers=owner.auth)
    assert r.status_code == 200, r.text  # ending one made room


async def _seed_streams(settings: Any, owner: Any, ages: list[timedelta]) -> None:
    async with await psycopg.AsyncConnection.connect(_dsn(settings), autocommit=True) as conn:
        for age in ages:
            await conn.execute(
                "INSERT INTO live_streams (user_id, title, quality, bitrate, stream_key,"
                " created_at) VALUES (%s, 'seeded', '1080p', 1000, %s, %s)",
                (owner.id, f"key-{uuid.uuid4().hex}", datetime.now(UTC) - age),
            )


async def test_streams_created_per_hour_are_capped(client, settings, make_user):
    limit = settings.max_streams_created_per_hour
    owner, veteran = await make_user(), await make_user()
    # The oldest of the last `limit` leaves the hour in about a minute.
    await _seed_streams(
        settings, owner, [timedelta(minutes=59)] + [timedelta(minutes=5)] * (limit - 1)
    )
    r = await client.post(f"{BASE}/create", json={"title": "one too many"}, headers=owner.auth)
    assert_error(r, 429, "too_many_streams_created")
    assert 30 <= _retry_after(r) <= 90
    # streams older than the hour do not count
    await _seed_streams(settings, veteran, [timedelta(minutes=61)] * limit)
    r = await client.post(f"{BASE}/create", json={"title": "fine"}, headers=veteran.auth)
    assert r.status_code == 201, r.text


# -- rate limits --------------------------------------------------------------------


def _assert_limited(rs: list[httpx.Response], ok: set[int], burst: int, rate: float, s: float):
    statuses = [r.status_code for r in rs]
    assert set(statuses) <= ok | {429}, statuses
    assert 429 in statuses
    assert sum(st in ok for st in statuses) <= burst + rate * s + 1
    for r in rs:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limited"
            _retry_after(r)


async def test_joins_are_rate_limited(client, settings, make_user, make_stream):
    owner, viewer = await make_user(), await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    t0 = time.monotonic()
    rs = [
        await client.post(f"{BASE}/{sid}/{'join' if i % 2 == 0 else 'leave'}", headers=viewer.auth)
        for i in range(settings.join_burst + 10)
    ]
    elapsed = time.monotonic() - t0
    _assert_limited(rs, {200}, settings.join_burst, settings.join_rate_per_s, elapsed)
    other = await make_user()  # per user
    assert (await client.post(f"{BASE}/{sid}/join", headers=other.auth)).status_code == 200


async def test_creates_are_rate_limited(client, settings, make_user):
    owner = await make_user()
    t0 = time.monotonic()
    rs = await asyncio.gather(
        *[
            client.post(f"{BASE}/create", json={"title": f"burst {i}"}, headers=owner.auth)
            for i in range(settings.stream_burst + 3)
        ]
    )
    elapsed = time.monotonic() - t0
    _assert_limited(list(rs), {201}, settings.stream_burst, settings.stream_rate_per_s, elapsed)


async def test_friend_requests_are_rate_limited(client, settings, make_user):
    me = await make_user()
    others = [await make_user() for _ in range(3)]
    t0 = time.monotonic()
    rs = [
        await client.post(f"/api/friends/{others[i % 3].id}", headers=me.auth)
        for i in range(settings.friend_burst + 5)
    ]
    elapsed = time.monotonic() - t0
    _assert_limited(rs, {201}, settings.friend_burst, settings.friend_rate_per_s, elapsed)


async def test_reports_are_rate_limited(client, settings, make_user, make_stream):
    owner, reporter = await make_user(), await make_user()
    sids = [(await make_stream(owner))["id"] for _ in range(2)]
    rs = [
        await client.post(
            f"{BASE}/{sids[i % 2]}/report", json={"reason": "spam"}, headers=reporter.auth
        )
        for i in range(settings.report_burst + 2)
    ]
    _assert_limited(rs, {201, 409}, settings.report_burst, settings.report_rate_per_s, 1.0)
    assert [r.status_code for r in rs[:2]] == [201, 201]
    assert rs[-1].status_code == 429 and _retry_after(rs[-1]) >= 10  # ~a minute a report


# -- realtime connections -----------------------------------------------------------


def _ws_url(settings: Any, sid: str, token: str) -> str:
    return f"ws://{settings.api_host}:{settings.api_port}{BASE}/{sid}/ws?access_token={token}"


async def test_realtime_connections_per_user_are_capped(client, settings, make_user, make_stream):
    owner, viewer = await make_user(), await make_user()
    sid = (await make_stream(owner, start=True))["id"]
    url = f"{BASE}/{sid}/events/stream"
    cap = settings.max_realtime_per_user
    async with contextlib.AsyncExitStack() as open_streams:
        for _ in range(cap):
            r = await open_streams.enter_async_context(
                client.stream("GET", url, headers=viewer.auth)
            )
            assert r.status_code == 200
        async with client.stream("GET", url, headers=viewer.auth) as r:
            status = r.status_code
            body = json.loads(await r.aread()) if status != 200 else {}
            headers = r.headers
        assert status == 429 and body["error"]["code"] == "too_many_connections"
        assert int(headers["Retry-After"]) >= 1
        async with ws_connect(_ws_url(settings, sid, viewer.token)) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert first["error"]["code"] == "too_many_connections"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 4429
        async with client.stream("GET", url, headers=owner.auth) as r:
            assert r.status_code == 200  # per user: others are not affected
    # Closed connections give their places back (once the server notices).
    deadline = time.monotonic() + 20
    while True:
        async with client.stream("GET", url, headers=viewer.auth) as r:
            if r.status_code == 200:
                break
        assert time.monotonic() < deadline, "closed connections still counted"
        await asyncio.sleep(0.5)


# -- deleted users ------------------------------------------------------------------


async def test_a_deleted_users_token_is_refused_with_401(client, settings, make_user, make_stream):
    seen, unseen = await make_user("gone"), await make_user("gone")
    sid = (await make_stream(seen))["id"]  # the replica now knows `seen`
    async with await psycopg.AsyncConnection.connect(_dsn(settings), autocommit=True) as conn:
        await conn.execute("DELETE FROM users WHERE id = ANY(%s)", ([seen.id, unseen.id],))
    # A token the replica never saw: refused at once, and the account is not made again.
    r = await client.post(f"{BASE}/create", json={"title": "t"}, headers=unseen.auth)
    assert_error(r, 401, "user_deleted")
    # A token it saw: refused once the replica checks again (at most user_cache_s later):
    # polled, until a request sent past that bound (the last chance) is still accepted.
    deadline = time.monotonic() + settings.user_cache_s + 0.5
    while True:
        last_chance = time.monotonic() > deadline
        r = await client.get(f"{BASE}/{sid}", headers=seen.auth)
        if r.status_code == 401:
            break
        assert not last_chance, f"{r.status_code}: still accepted after user_cache_s"
        await asyncio.sleep(0.2)
    for r in [
        await client.post(f"{BASE}/create", json={"title": "t"}, headers=seen.auth),
        await client.post(f"/api/friends/{unseen.id}", headers=seen.auth),
        await client.get(f"{BASE}/{sid}", headers=seen.auth),
    ]:
        assert_error(r, 401, "user_deleted")
    async with await psycopg.AsyncConnection.connect(_dsn(settings), autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM users WHERE id = ANY(%s)", ([seen.id, unseen.id],)
        )
        assert (await cur.fetchone())[0] == 0


# -- the database is down -------------------------------------------------------------


async def test_every_connection_has_a_statement_timeout(db, settings):
    async with db.acting(None) as conn:
        shown = (await conn.execute(text("SHOW statement_timeout"))).scalar()
    assert shown == f"{round(settings.db_statement_timeout_s)}s"


async def test_an_api_whose_database_is_down_answers_503_with_retry_after(settings, tokens):
    """The same app, built in this process, pointed at a port where nothing listens."""
    dead = settings.model_copy(
        update={"app_database_url": f"postgresql+psycopg://lumalive@127.0.0.1:{free_port()}/gone"}
    )
    app = create_app(dead)
    token = tokens.issue(uuid.uuid4())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            r = await api.get("/healthz")
            err = assert_error(r, 503, "database_unavailable")
            assert err["down"] == ["database"] and _retry_after(r)
            for method, url, headers in [
                ("GET", f"{BASE}/live", {}),
                ("GET", f"{BASE}/{uuid.uuid4()}", {}),
                ("POST", f"{BASE}/create", {"Authorization": f"Bearer {token}"}),
            ]:
                t0 = time.monotonic()
                r = await api.request(method, url, json={"title": "t"}, headers=headers)
                assert_error(r, 503, "database_unavailable")
                _retry_after(r)
                assert time.monotonic() - t0 < dead.db_connect_timeout_s + 2
    finally:
        if app.state.replica is not None:
            await app.state.replica.close()
