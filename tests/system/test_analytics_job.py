"""The batch analytics job (Ray Data over the real Postgres) and the overview endpoint.

A small data set is seeded straight into the tables (as the schema owner, with
timestamps over three UTC days); the job's rollups must equal what plain SQL
computes from the same rows, a second run must change nothing, and owners see
only their own streams in the overview.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from cluster import analytics_job
from lumalive.store.rollups import CATEGORY_DAY_COLUMNS, STREAM_DAY_COLUMNS

# The same definitions as the job's docstring, written independently in SQL.
EXPECTED_STREAM_DAYS = """
WITH s AS (SELECT * FROM live_streams WHERE category = %(cat)s AND started_at IS NOT NULL),
days AS (
    SELECT s.id AS stream_id, d::date AS day FROM s,
           generate_series((s.started_at AT TIME ZONE 'UTC')::date,
                           COALESCE((s.ended_at AT TIME ZONE 'UTC')::date, %(today)s),
                           interval '1 day') d
    WHERE d::date >= %(since)s),
v AS (SELECT *, (joined_at AT TIME ZONE 'UTC')::date AS day FROM live_stream_viewers),
c AS (SELECT *, (created_at AT TIME ZONE 'UTC')::date AS day FROM live_stream_chat),
r AS (SELECT *, (created_at AT TIME ZONE 'UTC')::date AS day FROM live_stream_reactions),
instants AS (
    SELECT stream_id, day, (day::timestamp AT TIME ZONE 'UTC') AS t FROM days
    UNION ALL
    SELECT v.stream_id, v.day, v.joined_at FROM v JOIN days USING (stream_id, day))
SELECT d.stream_id::text, d.day, s.user_id::text, s.category, s.quality,
  (SELECT COALESCE(sum(watch_duration), 0) FROM v
    WHERE v.stream_id = d.stream_id AND v.day = d.day) AS watch_seconds,
  (SELECT count(*) FROM v WHERE v.stream_id = d.stream_id AND v.day = d.day) AS viewer_sessions,
  (SELECT count(DISTINCT user_id) FROM v
    WHERE v.stream_id = d.stream_id AND v.day = d.day) AS unique_viewers,
  (SELECT max((SELECT count(*) FROM live_stream_viewers x
               WHERE x.stream_id = i.stream_id AND x.joined_at <= i.t
                 AND (x.left_at IS NULL OR x.left_at > i.t)))
     FROM instants i WHERE i.stream_id = d.stream_id AND i.day = d.day) AS peak_viewers,
  (SELECT count(DISTINCT v.user_id) FROM v
    WHERE v.stream_id = d.stream_id AND v.day = d.day
      AND (v.user_id IN (SELECT user_id FROM c WHERE c.stream_id = d.stream_id AND c.day = d.day)
        OR v.user_id IN (SELECT user_id FROM r WHERE r.stream_id = d.stream_id AND r.day = d.day))
  ) AS engaged_viewers,
  (SELECT count(*) FROM c WHERE c.stream_id = d.stream_id AND c.day = d.day) AS chat_messages,
  (SELECT count(*) FROM c WHERE c.stream_id = d.stream_id AND c.day = d.day
      AND c.is_moderated) AS moderated_messages,
  (SELECT count(*) FROM r WHERE r.stream_id = d.stream_id AND r.day = d.day) AS reactions
FROM days d JOIN s ON s.id = d.stream_id
"""

EXPECTED_CATEGORY_DAYS = """
WITH s AS (SELECT * FROM live_streams WHERE category = %(cat)s AND started_at IS NOT NULL),
days AS (
    SELECT s.id, s.quality, d::date AS day FROM s,
           generate_series((s.started_at AT TIME ZONE 'UTC')::date,
                           COALESCE((s.ended_at AT TIME ZONE 'UTC')::date, %(today)s),
                           interval '1 day') d
    WHERE d::date >= %(since)s),
v AS (SELECT v.*, s.quality, (v.joined_at AT TIME ZONE 'UTC')::date AS day
        FROM live_stream_viewers v JOIN s ON s.id = v.stream_id),
c AS (SELECT c.*, s.quality, (c.created_at AT TIME ZONE 'UTC')::date AS day
        FROM live_stream_chat c JOIN s ON s.id = c.stream_id),
r AS (SELECT r.*, s.quality, (r.created_at AT TIME ZONE 'UTC')::date AS day
        FROM live_stream_reactions r JOIN s ON s.id = r.stream_id)
SELECT g.day, %(cat)s AS category, g.quality, count(*) AS streams,
  (SELECT count(*) FROM v WHERE v.quality = g.quality AND v.day = g.day) AS viewer_sessions,
  (SELECT count(DISTINCT user_id) FROM v
    WHERE v.quality = g.quality AND v.day = g.day) AS unique_viewers,
  (SELECT COALESCE(sum(watch_duration), 0) FROM v
    WHERE v.quality = g.quality AND v.day = g.day) AS watch_seconds,
  (SELECT count(*) FROM c WHERE c.quality = g.quality AND c.day = g.day) AS chat_messages,
  (SELECT count(*) FROM r WHERE r.quality = g.quality AND r.day = g.day) AS reactions
FROM days g GROUP BY g.day, g.quality
"""


def _dsn(settings: Any) -> str:
    return settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def _at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=UTC)


@pytest.fixture
async def seeded(settings: Any, make_user: Any) -> dict[str, Any]:
    """Three streams of a fresh category over three days: two 4K (one spanning
    midnight), one 1080p still live; overlapping, re-joined and open viewings,
    chat (one moderated) and reactions."""
    today = datetime.now(UTC).date()
    d0, d1 = today - timedelta(days=3), today - timedelta(days=2)
    cat = f"cat-{uuid.uuid4().hex[:10]}"
    alice, bob = await make_user("alice"), await make_user("bob")
    v = [await make_user("v") for _ in range(4)]
    async with await psycopg.AsyncConnection.connect(_dsn(settings), autocommit=True) as conn:

        async def stream(owner: Any, quality: str, start: datetime, end: datetime | None) -> str:
            row = await (
                await conn.execute(
                    "INSERT INTO live_streams (user_id, title, quality, bitrate, status, category,"
                    " stream_key, started_at, ended_at) VALUES (%s, 'seeded', %s, 1000, %s, %s, %s,"
                    " %s, %s) RETURNING id",
                    (
                        owner.id,
                        quality,
                        "ended" if end else "live",
                        cat,
                        f"key-{uuid.uuid4().hex}",
                        start,
                        end,
                    ),
                )
            ).fetchone()
            return row[0]

        async def view(sid: str, who: Any, joined: datetime, left: datetime | None) -> None:
            vid = (
                await (
                    await conn.execute(
                        "INSERT INTO live_stream_viewers (stream_id, user_id, joined_at)"
                        " VALUES (%s, %s, %s) RETURNING id",
                        (sid, who.id, joined),
                    )
                ).fetchone()
            )[0]
            if left is not None:  # as the API does: the leave trigger sets watch_duration
                await conn.execute(
                    "UPDATE live_stream_viewers SET left_at = %s WHERE id = %s", (left, vid)
                )

        async def chat(sid: str, who: Any, at: datetime, moderated: bool = False) -> None:
            await conn.execute(
                "INSERT INTO live_stream_chat (stream_id, user_id, message, is_moderated,"
                " created_at) VALUES (%s, %s, 'hi', %s, %s)",
                (sid, who.id, moderated, at),
            )

        async def react(sid: str, who: Any, at: datetime) -> None:
            await conn.execute(
                "INSERT INTO live_stream_reactions (stream_id, user_id, reaction, created_at)"
                " VALUES (%s, %s, '🔥', %s)",
                (sid, who.id, at),
            )

        s1 = await stream(alice, "4K", _at(d0, 10), _at(d1, 2))
        s2 = await stream(alice, "4K", _at(d0, 20), _at(d0, 23))
        s3 = await stream(bob, "1080p", _at(d1, 1), None)
        await view(s1, v[0], _at(d0, 10, 5), _at(d0, 12))
        await view(s1, v[1], _at(d0, 11), _at(d0, 11, 30))
        await view(s1, v[2], _at(d0, 11, 10), _at(d0, 13))  # peak 3 at 11:10
        await view(s1, v[0], _at(d0, 14), _at(d0, 14, 20))  # re-join: 2 sessions, 1 user
        await view(s1, v[3], _at(d0, 23, 30), _at(d1, 0, 30))  # across midnight
        await view(s1, v[1], _at(d1, 0, 10), _at(d1, 1))  # d1 peak 2 at 00:10
        await view(s2, v[0], _at(d0, 20, 30), _at(d0, 22))
        await view(s2, v[1], _at(d0, 21), _at(d0, 23))
        await view(s3, v[2], _at(d1, 1, 30), _at(d1, 3))
        await view(s3, v[3], _at(d1, 2), None)  # still watching
        await chat(s1, v[0], _at(d0, 10, 30))
        await chat(s1, v[0], _at(d0, 11, 15), moderated=True)
        await chat(s1, v[2], _at(d0, 12))
        await chat(s1, v[1], _at(d1, 0, 20))
        await chat(s2, v[1], _at(d0, 21, 30))
        await react(s1, v[1], _at(d0, 11, 5))
        await react(s1, v[3], _at(d1, 0, 15))
        await react(s3, v[3], _at(d1, 2, 30))
        await react(s3, v[3], _at(d1, 2, 31))
    return {
        "cat": cat,
        "d0": d0,
        "d1": d1,
        "today": today,
        "alice": alice,
        "bob": bob,
        "streams": {"s1": str(s1), "s2": str(s2), "s3": str(s3)},
    }


async def _rows(settings: Any, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(_dsn(settings), row_factory=dict_row) as c:
        return await (await c.execute(sql, params)).fetchall()


def _norm(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return sorted(
        tuple(str(r[c]) if c in ("stream_id", "user_id") else r[c] for c in columns) for r in rows
    )


async def test_rollups_match_sql_and_are_idempotent(client, settings, seeded):
    since = seeded["d0"]
    params = {"cat": seeded["cat"], "since": since, "today": seeded["today"]}
    result = await asyncio.to_thread(analytics_job.run, settings, since, progress=False)
    assert result["stream_days"] >= 2 + 1 + 3 and result["category_days"] >= 5

    stored = await _rows(
        settings, "SELECT r.* FROM stream_daily_rollups r WHERE category = %(cat)s", params
    )
    expected = await _rows(settings, EXPECTED_STREAM_DAYS, params)
    for row in expected:
        u = row["unique_viewers"]
        row["engagement_rate"] = pytest.approx(row["engaged_viewers"] / u if u else 0.0, rel=1e-6)
    assert _norm(stored, STREAM_DAY_COLUMNS) == _norm(expected, STREAM_DAY_COLUMNS)

    # A few figures by hand, so SQL and job cannot share one mistake.
    s1, d0, d1 = seeded["streams"]["s1"], seeded["d0"], seeded["d1"]
    by_key = {(str(r["stream_id"]), r["day"]): r for r in stored}
    assert by_key[(s1, d0)]["peak_viewers"] == 3 and by_key[(s1, d1)]["peak_viewers"] == 2
    assert by_key[(s1, d0)]["viewer_sessions"] == 5 and by_key[(s1, d0)]["unique_viewers"] == 4
    assert by_key[(s1, d0)]["watch_seconds"] == (115 + 30 + 110 + 20 + 60) * 60
    assert by_key[(s1, d0)]["chat_messages"] == 3 and by_key[(s1, d0)]["moderated_messages"] == 1
    assert by_key[(s1, d0)]["engaged_viewers"] == 3  # v0 and v2 chatted, v1 reacted
    s3 = seeded["streams"]["s3"]
    assert {d for (sid, d) in by_key if sid == s3} == {d1, d1 + timedelta(days=1), seeded["today"]}

    cats = await _rows(
        settings, "SELECT * FROM category_daily_rollups WHERE category = %(cat)s", params
    )
    expected_cats = await _rows(settings, EXPECTED_CATEGORY_DAYS, params)
    assert _norm(cats, CATEGORY_DAY_COLUMNS) == _norm(expected_cats, CATEGORY_DAY_COLUMNS)
    four_k_d0 = next(r for r in cats if r["quality"] == "4K" and r["day"] == d0)
    assert four_k_d0["streams"] == 2 and four_k_d0["unique_viewers"] == 4

    # Running again changes nothing, computed_at included.
    before = await _rows(
        settings,
        "SELECT * FROM stream_daily_rollups WHERE category = %(cat)s ORDER BY stream_id, day",
        params,
    )
    await asyncio.to_thread(analytics_job.run, settings, since, progress=False)
    after = await _rows(
        settings,
        "SELECT * FROM stream_daily_rollups WHERE category = %(cat)s ORDER BY stream_id, day",
        params,
    )
    assert after == before

    # The overview: owners see their own streams only.
    q = {"since": str(d0)}
    alice = (
        await client.get("/api/analytics/overview", params=q, headers=seeded["alice"].auth)
    ).json()
    assert {s["stream_id"] for s in alice["streams"]} == {s1, seeded["streams"]["s2"]}
    mine = [r for r in stored if str(r["user_id"]) == str(seeded["alice"].id)]
    assert alice["totals"]["watch_seconds"] == sum(r["watch_seconds"] for r in mine)
    assert alice["totals"]["chat_messages"] == 4 + 1 and alice["totals"]["reactions"] == 2
    assert alice["totals"]["peak_viewers"] == 3 and alice["totals"]["streams"] == 2
    bob = (await client.get("/api/analytics/overview", params=q, headers=seeded["bob"].auth)).json()
    assert [s["stream_id"] for s in bob["streams"]] == [s3]
    assert (await client.get("/api/analytics/overview")).status_code == 401
