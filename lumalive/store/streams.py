"""Streams: create, read what the acting user may see, and lifecycle transitions.

`stream_key` and `analytics` are not readable by the application role; the owner
gets them through the database functions `owner_stream_key` and `owner_analytics`
(sql/0005), and everyone else sees `analytics` as None.

Listings leave out NSFW streams (declared, or flagged by video moderation) unless the
caller owns them or opted in (sql/0006 `nsfw_listable`); reading one by id does not.
A suspended broadcaster's stream does not go live: the database refuses, and
`transition` says so as 403 `suspended`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncConnection

from lumalive.errors import Forbidden
from lumalive.store import cursor

__all__ = [
    "NewStream",
    "COLUMNS",
    "insert",
    "get",
    "owner_key",
    "list_live",
    "list_by_user",
    "transition",
    "for_key",
    "NSFW_LISTABLE",
]

# Plain columns only (others prefix them with a table alias); `_ROW` adds analytics.
COLUMNS = (
    "id, user_id, title, description, quality, bitrate, status, is_live, viewers, peak_viewers,"
    " duration, privacy, category, tags, is_nsfw, ai_features, end_reason,"
    " created_at, started_at, ended_at, updated_at,"
    " latency_mode"  # sql/0012
)
# The listings' NSFW filter (sql/0006), over live_streams' own columns.
NSFW_LISTABLE = "nsfw_listable(is_nsfw, id, user_id)"
_ROW = f"{COLUMNS}, CASE WHEN user_id = app_user_id() THEN owner_analytics(id) END AS analytics"


@dataclass(frozen=True)
class NewStream:
    user_id: UUID
    title: str
    description: str
    quality: str
    bitrate: int
    privacy: str
    category: str
    tags: list[str]
    is_nsfw: bool
    ai_features: dict[str, Any]
    stream_key: str
    latency_mode: str = "low"  # sql/0012: low (LL-HLS) | normal


async def insert(conn: AsyncConnection, s: NewStream) -> dict[str, Any]:
    row = (
        (
            await conn.execute(
                text(
                    "INSERT INTO live_streams (user_id, title, description, quality, bitrate,"
                    " privacy,"
                    " category, tags, is_nsfw, ai_features, stream_key, latency_mode) VALUES"
                    " (:user_id, :title,"
                    " :description, :quality, :bitrate, :privacy, :category, :tags, :is_nsfw,"
                    # a new stream's counters are empty (and only its owner inserts it)
                    f" CAST(:ai AS jsonb), :stream_key, :latency_mode) RETURNING {COLUMNS},"
                    " CAST('{}' AS jsonb) AS analytics"
                ),
                {**s.__dict__, "ai": json.dumps(s.ai_features)},
            )
        )
        .mappings()
        .one()
    )
    return dict(row)


async def get(conn: AsyncConnection, stream_id: UUID) -> dict[str, Any] | None:
    """The stream if the acting user may see it, else None."""
    row = (
        (
            await conn.execute(
                text(f"SELECT {_ROW} FROM live_streams WHERE id = :id"), {"id": stream_id}
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def owner_key(conn: AsyncConnection, stream_id: UUID) -> str | None:
    return (await conn.execute(text("SELECT owner_stream_key(:id)"), {"id": stream_id})).scalar()


async def list_live(
    conn: AsyncConnection,
    *,
    limit: int,
    after: str | None,
    category: str | None,
    quality: str | None,
    tag: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Live streams visible to the actor, newest first, keyset-paginated."""
    where = ["is_live", NSFW_LISTABLE]
    params: dict[str, Any] = {"limit": limit + 1}
    if category:
        where.append("category = :category")
        params["category"] = category
    if quality:
        where.append("quality = :quality")
        params["quality"] = quality
    if tag:
        where.append(":tag = ANY(tags)")
        params["tag"] = tag
    if after:
        ts, sid = cursor.decode_time_id(after)
        where.append("(started_at, id) < (CAST(:ts AS timestamptz), CAST(:sid AS uuid))")
        params.update(ts=ts, sid=sid)
    rows = (
        (
            await conn.execute(
                text(
                    f"SELECT {_ROW} FROM live_streams WHERE {' AND '.join(where)}"
                    " ORDER BY started_at DESC, id DESC LIMIT :limit"
                ),
                params,
            )
        )
        .mappings()
        .all()
    )
    return _page(rows, limit, "started_at")


async def list_by_user(
    conn: AsyncConnection, user_id: UUID, *, limit: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A user's streams that the actor may see, newest first."""
    params: dict[str, Any] = {"uid": user_id, "limit": limit + 1}
    where = f"user_id = :uid AND {NSFW_LISTABLE}"
    if after:
        ts, sid = cursor.decode_time_id(after)
        where += " AND (created_at, id) < (CAST(:ts AS timestamptz), CAST(:sid AS uuid))"
        params.update(ts=ts, sid=sid)
    rows = (
        (
            await conn.execute(
                text(
                    f"SELECT {_ROW} FROM live_streams WHERE {where}"
                    " ORDER BY created_at DESC, id DESC LIMIT :limit"
                ),
                params,
            )
        )
        .mappings()
        .all()
    )
    return _page(rows, limit, "created_at")


def _page(rows: Any, limit: int, key: str) -> tuple[list[dict[str, Any]], str | None]:
    items = [dict(r) for r in rows[:limit]]
    nxt = cursor.encode(items[-1][key].isoformat(), items[-1]["id"]) if len(rows) > limit else None
    return items, nxt


async def transition(
    conn: AsyncConnection,
    stream_id: UUID,
    from_status: str,
    to_status: str,
    end_reason: str | None = None,
) -> dict[str, Any] | None:
    """Move a stream the actor owns from one state to the next; None if it was not
    in `from_status` (or not the actor's). Triggers stamp times and duration.
    Forbidden `suspended` if its broadcaster may not go live (sql/0006)."""
    try:
        result = await conn.execute(
            text(
                "UPDATE live_streams SET status = :to,"
                " end_reason = COALESCE(:reason, end_reason)"
                f" WHERE id = :id AND status = :frm RETURNING {_ROW}"
            ),
            {"id": stream_id, "to": to_status, "frm": from_status, "reason": end_reason},
        )
    except exc.DBAPIError as e:
        cause = e.orig
        if isinstance(cause, psycopg.errors.InsufficientPrivilege) and (
            cause.diag.message_primary == "suspended"
        ):
            raise Forbidden("this account is suspended from going live", "suspended") from None
        raise
    row = result.mappings().first()
    return dict(row) if row else None


async def for_key(conn: AsyncConnection, key: str) -> dict[str, Any] | None:
    """Which stream a key publishes to (id, user_id, status), for the ingest server."""
    row = (
        (await conn.execute(text("SELECT * FROM stream_for_key(:k)"), {"k": key}))
        .mappings()
        .first()
    )
    return dict(row) if row else None
