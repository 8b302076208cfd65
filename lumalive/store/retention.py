"""Retention rows (sql/0009_retention.sql): deleting a stream, and the media that the
DVR window and the VOD lifetime let expire.

Rows only: the caller deletes the returned storage keys once the transaction has
committed, so a playlist never names an object that is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["Expired", "delete_stream", "expire_media", "stream_prefix"]


@dataclass(frozen=True, slots=True)
class Expired:
    """One expired segment (`key` set) or a whole stream's media (`key` None)."""

    stream_id: UUID
    key: str | None

    @property
    def prefix(self) -> str:
        """What to delete from storage: the segment's key or the stream's prefix."""
        return self.key if self.key is not None else stream_prefix(self.stream_id)


def stream_prefix(stream_id: UUID | str) -> str:
    """Every storage key of a stream starts with this (`actors.media_worker.segment_key`)."""
    return f"{stream_id}/"


async def delete_stream(conn: AsyncConnection, stream_id: UUID) -> str | None:
    """Delete the acting user's stream and every row naming it: "deleted", "live" (not
    deleted: end it first) or None (not the caller's stream, or none)."""
    return (await conn.execute(text("SELECT delete_stream(:s)"), {"s": stream_id})).scalar()


async def expire_media(
    conn: AsyncConnection,
    *,
    dvr_window_s: float,
    keep_last: int,
    vod_retention_days: float | None,
    max_rows: int,
) -> list[Expired]:
    """Delete up to `max_rows` segments that left a live stream's DVR window (0: none
    do) and up to `max_rows` ended streams' VODs older than `vod_retention_days` (None:
    kept forever). Only in a session with no acting user."""
    rows = await conn.execute(
        text(
            "SELECT expired_stream, expired_path FROM expire_media("
            "CAST(:dvr AS interval), :keep, CAST(:vod AS interval), :n)"
        ),
        {
            "dvr": timedelta(seconds=dvr_window_s) if dvr_window_s > 0 else None,
            "keep": keep_last,
            "vod": timedelta(days=vod_retention_days) if vod_retention_days is not None else None,
            "n": max_rows,
        },
    )
    return [Expired(r.expired_stream, r.expired_path) for r in rows]
