"""LL-HLS rows (sql/0012): a stream's LL renditions, their parts and segments.

Written by the stream's live encoder (`actors.ll_publisher`) acting as the owner, one
writer per stream; read by the API (`serve_app.routes.llhls`) as the caller, so RLS
decides who sees what. Inserting parts NOTIFYs `lumalive_llhls` with the stream id.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .retention import Expired

__all__ = [
    "CHANNEL",
    "LlResume",
    "NewLlRendition",
    "NewLlSegment",
    "NewPart",
    "add_parts",
    "add_renditions",
    "add_segments",
    "expire_ll_media",
    "heads",
    "part",
    "parts_from",
    "renditions",
    "resume",
    "segment",
    "segments",
]

CHANNEL = "lumalive_llhls"


@dataclass(frozen=True)
class NewLlRendition:
    name: str
    position: int
    width: int
    height: int
    frame_rate: float
    bandwidth: int
    average_bandwidth: int
    codecs: str
    part_target: float
    target_duration: int


@dataclass(frozen=True)
class NewPart:
    rendition: str
    sequence: int
    part: int
    epoch: int
    duration: float
    independent: bool
    bytes: int
    path: str
    program_date_time: datetime


@dataclass(frozen=True)
class NewLlSegment:
    rendition: str
    sequence: int
    epoch: int
    duration: float
    bytes: int
    path: str
    init_path: str
    discontinuity: bool
    discontinuity_sequence: int
    program_date_time: datetime


@dataclass(frozen=True)
class LlResume:
    """Where a stream's next encoder session continues."""

    next_sequence: int = 0
    next_epoch: int = 0
    discontinuities: int = 0  # discontinuity tags so far
    any_segment: bool = False  # something was published before: the next is a discontinuity


async def add_renditions(
    conn: AsyncConnection, stream_id: UUID, rows: list[NewLlRendition]
) -> None:
    await conn.execute(
        text(
            "INSERT INTO ll_renditions (stream_id, name, position, width, height, frame_rate,"
            " bandwidth, average_bandwidth, codecs, part_target, target_duration) VALUES"
            " (:stream_id, :name, :position, :width, :height, :frame_rate, :bandwidth,"
            " :average_bandwidth, :codecs, :part_target, :target_duration)"
            " ON CONFLICT DO NOTHING"
        ),
        [{"stream_id": stream_id, **asdict(r)} for r in rows],
    )


async def add_parts(conn: AsyncConnection, stream_id: UUID, rows: list[NewPart]) -> None:
    await conn.execute(
        text(
            "INSERT INTO ll_parts (stream_id, rendition, sequence, part, epoch, duration,"
            " independent, bytes, path, program_date_time) VALUES (:stream_id, :rendition,"
            " :sequence, :part, :epoch, :duration, :independent, :bytes, :path,"
            " :program_date_time) ON CONFLICT DO NOTHING"
        ),
        [{"stream_id": stream_id, **asdict(r)} for r in rows],
    )


async def add_segments(conn: AsyncConnection, stream_id: UUID, rows: list[NewLlSegment]) -> None:
    await conn.execute(
        text(
            "INSERT INTO ll_segments (stream_id, rendition, sequence, epoch, duration, bytes,"
            " path, init_path, discontinuity, discontinuity_sequence, program_date_time)"
            " VALUES (:stream_id, :rendition, :sequence, :epoch, :duration, :bytes, :path,"
            " :init_path, :discontinuity, :discontinuity_sequence, :program_date_time)"
            " ON CONFLICT DO NOTHING"
        ),
        [{"stream_id": stream_id, **asdict(r)} for r in rows],
    )


async def resume(conn: AsyncConnection, stream_id: UUID) -> LlResume:
    """After the parts and segments already published (a reconnect, an actor restart)."""
    row = (
        (
            await conn.execute(
                text(
                    "SELECT (SELECT max(sequence) FROM ll_parts WHERE stream_id = :s) AS seq,"
                    " (SELECT max(epoch) FROM ll_parts WHERE stream_id = :s) AS epoch,"
                    " (SELECT max(discontinuity_sequence + discontinuity::int) FROM ll_segments"
                    "  WHERE stream_id = :s) AS disc"
                ),
                {"s": stream_id},
            )
        )
        .mappings()
        .one()
    )
    if row["seq"] is None:
        return LlResume()
    return LlResume(row["seq"] + 1, (row["epoch"] or 0) + 1, row["disc"] or 0, True)


async def renditions(conn: AsyncConnection, stream_id: UUID) -> list[dict[str, Any]]:
    """The LL renditions, highest first; empty if none or not visible."""
    rows = await conn.execute(
        text("SELECT * FROM ll_renditions WHERE stream_id = :s ORDER BY position"),
        {"s": stream_id},
    )
    return [dict(r) for r in rows.mappings()]


async def segments(
    conn: AsyncConnection, stream_id: UUID, rendition: str, last: int | None
) -> list[dict[str, Any]]:
    """A rendition's whole segments in order: the `last` newest, or all."""
    rows = await conn.execute(
        text(
            "SELECT * FROM (SELECT sequence, epoch, duration, bytes, init_path, discontinuity,"
            " discontinuity_sequence, program_date_time FROM ll_segments"
            " WHERE stream_id = :s AND rendition = :r ORDER BY sequence DESC LIMIT :n) w"
            " ORDER BY sequence"
        ),
        {"s": stream_id, "r": rendition, "n": last},
    )
    return [dict(r) for r in rows.mappings()]


async def parts_from(
    conn: AsyncConnection, stream_id: UUID, rendition: str, sequence: int
) -> list[dict[str, Any]]:
    """A rendition's parts of segments `sequence` and later, in order."""
    rows = await conn.execute(
        text(
            "SELECT sequence, part, epoch, duration, independent, program_date_time"
            " FROM ll_parts WHERE stream_id = :s AND rendition = :r AND sequence >= :q"
            " ORDER BY sequence, part"
        ),
        {"s": stream_id, "r": rendition, "q": sequence},
    )
    return [dict(r) for r in rows.mappings()]


async def heads(conn: AsyncConnection, stream_id: UUID) -> dict[str, tuple[int, int]]:
    """Each LL rendition's newest part: (sequence, part)."""
    rows = await conn.execute(
        text(
            "SELECT DISTINCT ON (rendition) rendition, sequence, part FROM ll_parts"
            " WHERE stream_id = :s ORDER BY rendition, sequence DESC, part DESC"
        ),
        {"s": stream_id},
    )
    return {r.rendition: (r.sequence, r.part) for r in rows}


async def part(
    conn: AsyncConnection, stream_id: UUID, rendition: str, sequence: int, index: int
) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                text(
                    "SELECT path, bytes FROM ll_parts WHERE stream_id = :s AND rendition = :r"
                    " AND sequence = :q AND part = :p"
                ),
                {"s": stream_id, "r": rendition, "q": sequence, "p": index},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def segment(
    conn: AsyncConnection, stream_id: UUID, rendition: str, sequence: int
) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                text(
                    "SELECT path, bytes FROM ll_segments WHERE stream_id = :s AND rendition = :r"
                    " AND sequence = :q"
                ),
                {"s": stream_id, "r": rendition, "q": sequence},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def expire_ll_media(
    conn: AsyncConnection,
    *,
    dvr_window_s: float,
    keep_last: int,
    vod_retention_days: float | None,
    max_rows: int,
) -> list[Expired]:
    """`retention.expire_media` for the LL tables (sql/0012 `expire_ll_media`): up to
    `max_rows` LL segments past a live stream's DVR window (0: none), each returned
    with its parts' keys, and up to `max_rows` ended streams' LL rows past
    `vod_retention_days` (None: kept). Only in a session with no acting user."""
    rows = await conn.execute(
        text(
            "SELECT expired_stream, expired_path FROM expire_ll_media("
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
