"""Analytics rollups: how the batch job writes them and how owners read them.

Tables (sql/0002): `stream_daily_rollups` (per stream and UTC day; owners read
their own rows under RLS) and `category_daily_rollups` (per day, category and
quality tier; operators only). The job upserts with ON CONFLICT DO UPDATE ...
WHERE something changed, so running it twice over the same data leaves every
row - `computed_at` included - as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["STREAM_DAY_COLUMNS", "CATEGORY_DAY_COLUMNS", "upsert_sql", "upsert", "overview"]

STREAM_DAY_KEY = ("stream_id", "day")
STREAM_DAY_COLUMNS = (
    "stream_id",
    "day",
    "user_id",
    "category",
    "quality",
    "watch_seconds",
    "viewer_sessions",
    "unique_viewers",
    "peak_viewers",
    "engaged_viewers",
    "engagement_rate",
    "chat_messages",
    "moderated_messages",
    "reactions",
)
CATEGORY_DAY_KEY = ("day", "category", "quality")
CATEGORY_DAY_COLUMNS = (
    "day",
    "category",
    "quality",
    "streams",
    "viewer_sessions",
    "unique_viewers",
    "watch_seconds",
    "chat_messages",
    "reactions",
)

_TABLES = {
    "stream_daily_rollups": (STREAM_DAY_COLUMNS, STREAM_DAY_KEY),
    "category_daily_rollups": (CATEGORY_DAY_COLUMNS, CATEGORY_DAY_KEY),
}


def upsert_sql(table: str) -> str:
    """INSERT ... ON CONFLICT DO UPDATE that touches a row only if a value changed."""
    columns, key = _TABLES[table]
    values = [c for c in columns if c not in key]
    return (
        f"INSERT INTO {table} AS t ({', '.join(columns)})"
        f" VALUES ({', '.join(['%s'] * len(columns))})"
        f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET"
        f" {', '.join(f'{c} = EXCLUDED.{c}' for c in values)}, computed_at = now()"
        f" WHERE ({', '.join(f't.{c}' for c in values)})"
        f" IS DISTINCT FROM ({', '.join(f'EXCLUDED.{c}' for c in values)})"
    )


def upsert(cursor: Any, table: str, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows with a DB-API cursor (the job's owner connection); the caller commits."""
    columns, _ = _TABLES[table]
    params: list[Sequence[Any]] = [tuple(r[c] for c in columns) for r in rows]
    if params:
        cursor.executemany(upsert_sql(table), params)
    return len(params)


async def overview(conn: AsyncConnection, *, since: date, until: date) -> dict[str, Any]:
    """The acting user's streams from the rollups (RLS keeps it to their own)."""
    params = {"since": since, "until": until}
    where = "r.day BETWEEN :since AND :until"
    totals = (
        (
            await conn.execute(
                text(
                    "SELECT count(DISTINCT r.stream_id) AS streams,"
                    " COALESCE(sum(r.watch_seconds), 0)::bigint AS watch_seconds,"
                    " COALESCE(sum(r.viewer_sessions), 0)::bigint AS viewer_sessions,"
                    " COALESCE(sum(r.unique_viewers), 0)::bigint AS viewer_days,"
                    " COALESCE(max(r.peak_viewers), 0) AS peak_viewers,"
                    " COALESCE(sum(r.engaged_viewers), 0)::bigint AS engaged_viewer_days,"
                    " COALESCE(sum(r.chat_messages), 0)::bigint AS chat_messages,"
                    " COALESCE(sum(r.moderated_messages), 0)::bigint AS moderated_messages,"
                    " COALESCE(sum(r.reactions), 0)::bigint AS reactions,"
                    " max(r.computed_at) AS computed_at"
                    f" FROM stream_daily_rollups r WHERE {where}"
                ),
                params,
            )
        )
        .mappings()
        .one()
    )
    daily = await conn.execute(
        text(
            "SELECT r.day, count(*) AS streams, sum(r.watch_seconds)::bigint AS watch_seconds,"
            " sum(r.viewer_sessions)::bigint AS viewer_sessions,"
            " sum(r.unique_viewers)::bigint AS unique_viewers, max(r.peak_viewers) AS peak_viewers,"
            " sum(r.chat_messages)::bigint AS chat_messages,"
            " sum(r.reactions)::bigint AS reactions"
            f" FROM stream_daily_rollups r WHERE {where} GROUP BY r.day ORDER BY r.day"
        ),
        params,
    )
    streams = await conn.execute(
        text(
            "SELECT r.stream_id, s.title, r.category, r.quality, count(*) AS days,"
            " sum(r.watch_seconds)::bigint AS watch_seconds,"
            " sum(r.viewer_sessions)::bigint AS viewer_sessions,"
            " sum(r.unique_viewers)::bigint AS viewer_days, max(r.peak_viewers) AS peak_viewers,"
            " sum(r.engaged_viewers)::bigint AS engaged_viewer_days,"
            " sum(r.chat_messages)::bigint AS chat_messages,"
            " sum(r.moderated_messages)::bigint AS moderated_messages,"
            " sum(r.reactions)::bigint AS reactions"
            " FROM stream_daily_rollups r JOIN live_streams s ON s.id = r.stream_id"
            f" WHERE {where} GROUP BY r.stream_id, s.title, r.category, r.quality"
            " ORDER BY watch_seconds DESC, r.stream_id"
        ),
        params,
    )
    by_category = await conn.execute(
        text(
            "SELECT r.category, r.quality, count(DISTINCT r.stream_id) AS streams,"
            " sum(r.watch_seconds)::bigint AS watch_seconds,"
            " sum(r.viewer_sessions)::bigint AS viewer_sessions,"
            " sum(r.chat_messages)::bigint AS chat_messages, sum(r.reactions)::bigint AS reactions"
            f" FROM stream_daily_rollups r WHERE {where} GROUP BY r.category, r.quality"
            " ORDER BY watch_seconds DESC, r.category, r.quality"
        ),
        params,
    )
    t = dict(totals)
    t["engagement_rate"] = (
        round(t["engaged_viewer_days"] / t["viewer_days"], 4) if t["viewer_days"] else 0.0
    )
    return {
        "since": since,
        "until": until,
        "computed_at": t.pop("computed_at"),
        "totals": t,
        "daily": [dict(r) for r in daily.mappings()],
        "streams": [_with_rate(dict(r)) for r in streams.mappings()],
        "by_category": [dict(r) for r in by_category.mappings()],
    }


def _with_rate(row: dict[str, Any]) -> dict[str, Any]:
    row["engagement_rate"] = (
        round(row["engaged_viewer_days"] / row["viewer_days"], 4) if row["viewer_days"] else 0.0
    )
    return row
