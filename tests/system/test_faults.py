"""Faults and races the system must survive (issue 13), each bounded in time:

- concurrent friend requests of one pair, both ways: one friendship, no 5xx;
- a spoofed X-Forwarded-For from a peer that is no trusted proxy changes nothing;
- publishing to a created stream is refused over the owner's live-stream quota;
- the RTMP ingest actor killed mid-publish: restarted, the publisher reconnects and
  the stream goes on, its segments numbered on without a gap or a duplicate;
- Postgres stopped and started again mid-chat: 503 with Retry-After while it is
  down (promptly, never 500), chat again once it is back, and every acknowledged
  message stored. Last in this file, and it leaves the system whole: the same
  cluster comes back on the same socket and every pool finds it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest
import ray

from actors import ingest_actor
from cluster.postgres import EmbeddedPostgres
from lumalive.settings import Settings
from tests.utils.api import BASE, free_port
from tests.utils.rtmp import ffmpeg_publish, finished

pytestmark = pytest.mark.timeout(300)


def _libpq(url: str | None) -> str:
    return (url or "").replace("postgresql+psycopg://", "postgresql://", 1)


def _admin_rows(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """As the schema owner (no RLS): what is really stored."""
    with psycopg.connect(_libpq(settings.database_url)) as conn:
        return conn.execute(sql, params).fetchall()


async def _eventually(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)
    return value


# -- races -------------------------------------------------------------------------


async def test_concurrent_friend_requests_make_one_friendship(client, settings, make_user):
    a, b, c, d = [await make_user("friend") for _ in range(4)]
    both_ways = [
        client.post(f"/api/friends/{them.id}", headers=me.auth)
        for _ in range(10)
        for me, them in ((a, b), (b, a))
    ]
    one_way = [client.post(f"/api/friends/{d.id}", headers=c.auth) for _ in range(10)]
    answers = await asyncio.gather(*both_ways, *one_way)
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers if r.is_error]
    assert {r.json()["status"] for r in answers[20:]} == {"pending"}
    pairs = _admin_rows(
        settings,
        "SELECT requester_id, addressee_id, status FROM friendships"
        " WHERE requester_id = ANY(%s) ORDER BY status",
        [a.id, b.id, c.id],
    )
    assert len(pairs) == 2, pairs  # one row per pair
    assert [p[2] for p in pairs] == ["accepted", "pending"]  # both asked: friends
    assert (pairs[1][0], pairs[1][1]) == (c.id, d.id)


# -- addresses ---------------------------------------------------------------------


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(
    client, settings, make_user, make_stream
):
    """Anonymous realtime connections are capped per address. With no trusted proxy,
    each connection claiming another address in X-Forwarded-For still counts against
    the socket's own: the one past the cap is refused. (Behind the HAProxy ingress the
    replica trusts HAProxy, which replaces the client's header with the peer it saw.)"""
    assert settings.ingress == "haproxy" or settings.trusted_proxies == ""
    sid = (await make_stream(await make_user("caster"), start=True))["id"]
    url = f"{BASE}/{sid}/events/stream"
    cap = settings.max_realtime_per_ip
    async with contextlib.AsyncExitStack() as held:
        for i in range(cap):
            spoofed = {"X-Forwarded-For": f"198.51.100.{i + 1}"}
            r = await held.enter_async_context(client.stream("GET", url, headers=spoofed))
            assert r.status_code == 200, i
        async with client.stream("GET", url, headers={"X-Forwarded-For": "203.0.113.250"}) as r:
            status, body = r.status_code, await r.aread()
        assert status == 429 and json.loads(body)["error"]["code"] == "too_many_connections"


# -- the ingest --------------------------------------------------------------------


async def test_a_publish_over_the_live_stream_quota_is_refused(
    client, settings, make_user, make_stream
):
    """An ingest of its own (in process, own port) with a quota of one live stream."""
    from actors.ingest_actor import ClusterIngest

    quota = settings.model_copy(update={"rtmp_port": free_port(), "max_live_streams_per_user": 1})
    service = ClusterIngest(quota)
    port = await service.start()
    try:
        owner = await make_user("caster")
        first = await make_stream(owner, start=True)
        second = await make_stream(owner)
        url = f"rtmp://127.0.0.1:{port}/live/{second['stream_key']}"
        done = await finished(await ffmpeg_publish(url, realtime=False))
        assert done.returncode != 0, done.stderr
        r = await client.get(
            f"{BASE}/{second['id']}/events",
            params={"type": "ingest_refused"},
            headers=owner.auth,
        )
        [event] = r.json()["items"]
        assert event["data"]["reason"] == "too_many_live_streams"
        r = await client.get(f"{BASE}/{second['id']}", headers=owner.auth)
        assert r.json()["status"] == "created"
        # Ending the first frees the slot: the same publish now starts the second.
        r = await client.post(f"{BASE}/end/{first['id']}", headers=owner.auth)
        assert r.status_code == 200, r.text
        publisher = await ffmpeg_publish(url, realtime=False)

        async def live() -> bool:
            r = await client.get(f"{BASE}/{second['id']}", headers=owner.auth)
            return r.json()["status"] == "live"

        await _eventually(live, "the second stream to go live", 30)
        assert (await finished(publisher)).returncode == 0
        await client.post(f"{BASE}/end/{second['id']}", headers=owner.auth)
    finally:
        await service.stop()


def _segments(settings: Settings, sid: str) -> list[tuple[str, int, int]]:
    return [
        (r[0], r[1], r[2])
        for r in _admin_rows(
            settings,
            "SELECT rendition, sequence, source_sequence FROM stream_segments"
            " WHERE stream_id = %s ORDER BY rendition, sequence",
            sid,
        )
    ]


async def test_the_ingest_actor_killed_mid_publish_comes_back(
    client, settings, make_user, make_stream
):
    owner = await make_user("caster")
    stream = await make_stream(owner)
    sid, key = stream["id"], stream["stream_key"]
    url = f"rtmp://127.0.0.1:{settings.rtmp_port}/live/{key}"
    first = await ffmpeg_publish(url, loops=3)  # ~20 s, paced as an encoder sends

    def published(n: int) -> Callable[[], Awaitable[bool]]:
        return _true_when(lambda: len({s[1] for s in _segments(settings, sid)}) >= n)

    await _eventually(published(1), "a first segment", 60)
    before = _segments(settings, sid)
    handle = ingest_actor.lookup()
    assert handle is not None
    ray.kill(handle, no_restart=False)  # as a crash: Ray restarts it
    async with asyncio.timeout(30):
        await first.wait()  # the publisher lost its connection
    assert first.returncode != 0

    # OBS reconnects with the same key; the restarted actor listens again on its own.
    async def republished() -> asyncio.subprocess.Process | None:
        again = await ffmpeg_publish(url)  # paced: ~5 s of publishing
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.5):
                await again.wait()
                assert again.stderr is not None
                log.append((await again.stderr.read()).decode(errors="replace"))
                return None  # refused (not listening yet): try again
        return again

    log: list[str] = []

    again = await _eventually(republished, f"the restarted ingest to take it: {log[-2:]}", 45)
    assert (await finished(again)).returncode == 0
    # the clip is one segment (a keyframe per loop); the one cut when the actor died
    # is lost with it, the republished one follows on
    await _eventually(published(len({s[1] for s in before}) + 1), "a segment after", 90)
    r = await client.get(f"{BASE}/{sid}", headers=owner.auth)
    assert r.json()["status"] == "live"
    after = _segments(settings, sid)
    for rendition in {s[0] for s in after}:
        numbers = [s[1] for s in after if s[0] == rendition]
        assert numbers == list(range(len(numbers))), after  # no gap, no duplicate
    assert set(before) <= set(after)  # what was published stays as it was
    restarted = ingest_actor.lookup()
    assert restarted is not None
    assert await restarted.ready.remote() == settings.rtmp_port  # serving for later tests
    await client.post(f"{BASE}/end/{sid}", headers=owner.auth)


# -- Postgres goes away ------------------------------------------------------------


async def test_postgres_restarted_mid_chat_loses_no_acknowledged_message(
    client, settings, db, make_user, make_stream
):
    owner, viewer = await make_user("caster"), await make_user("chatter")
    sid = (await make_stream(owner, start=True))["id"]
    assert (await client.post(f"{BASE}/{sid}/join", headers=viewer.auth)).status_code == 200
    # (sent at, status, text, seconds to answer, Retry-After)
    answers: list[tuple[float, int, str, float, str | None]] = []
    stop = asyncio.Event()

    async def chat() -> None:
        i = 0
        while not stop.is_set():
            text, began = f"message {i}", time.monotonic()
            try:
                r = await client.post(
                    f"{BASE}/{sid}/chat", json={"message": text}, headers=viewer.auth, timeout=30
                )
                status, retry = r.status_code, r.headers.get("Retry-After")
            except httpx.TimeoutException:
                status, retry = 0, None  # hung: fails the test below
            answers.append((began, status, text, time.monotonic() - began, retry))
            i += 1
            await asyncio.sleep(max(0.0, 0.25 - (time.monotonic() - began)))  # under 5/s

    def acked() -> int:
        return sum(1 for a in answers if a[1] == 201)

    sender = asyncio.create_task(chat())
    pg = EmbeddedPostgres(settings.data_dir / "pg")
    try:
        await _eventually(_true_when(lambda: acked() >= 5), "chat before the outage", 30)
        await asyncio.to_thread(pg.halt)
        down_at = time.monotonic()
        await _eventually(
            _true_when(lambda: sum(a[1] == 503 for a in answers if a[0] > down_at) >= 3),
            "503s while Postgres is down",
            60,
        )
        await asyncio.to_thread(pg.resume)
        up_at = time.monotonic()
        await _eventually(
            _true_when(lambda: sum(a[1] == 201 for a in answers if a[0] > up_at) >= 5),
            "chat once Postgres is back",
            60,
        )
    finally:
        stop.set()
        await sender
        if pg._socket_dir is not None and not _running(settings):
            await asyncio.to_thread(pg.resume)
        await db.engine.dispose()  # this process's pool: the old connections are gone

    statuses = {a[1] for a in answers}
    assert statuses <= {201, 503}, [a for a in answers if a[1] not in (201, 503)]
    during = [a for a in answers if down_at < a[0] < up_at]
    assert during and all(a[1] == 503 and float(a[4] or 0) >= 1 for a in during), during
    # answered within the connect timeout (and a little), never hung
    assert max(a[3] for a in answers) < settings.db_connect_timeout_s + 5
    sent = {a[2] for a in answers if a[1] == 201}
    stored = {
        r[0]
        for r in _admin_rows(
            settings, "SELECT message FROM live_stream_chat WHERE stream_id = %s", sid
        )
    }
    assert sent <= stored, sorted(sent - stored)  # no acknowledged message lost
    assert (await client.get("/healthz")).status_code == 200
    await client.post(f"{BASE}/end/{sid}", headers=owner.auth)


def _true_when(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check


def _running(settings: Settings) -> bool:
    try:
        psycopg.connect(_libpq(settings.database_url), connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True
