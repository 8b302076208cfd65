"""Media rows: a stream's renditions and published segments (the playlists), and the
pipeline's per-segment moderation and quality measurements (see sql/0003_media.sql).

Written by the ingest actor's pipeline acting as the stream's owner, one writer per
stream; read by the API as the caller, so RLS decides who sees what.

Invariant: every rung of a stream has a row at every sequence number its lowest rung
has, once the stream has ended or its next pipeline has opened: the upper rungs left
unpublished then are gap rows (`gap_unpublished_rungs`, written by the stream's end,
`actors.stream_store`, and by a restarted pipeline, `actors.media_pipeline`). A stream
ended in SQL (the takedown of sql/0006) is the exception: no gaps are written for it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "NewRendition",
    "NewSegment",
    "NewModeration",
    "NewQuality",
    "Resume",
    "lock_status",
    "add_renditions",
    "renditions",
    "renditions_of",
    "add_segments",
    "playlist",
    "segment",
    "init_segment",
    "add_moderation",
    "add_quality",
    "resume",
    "gap_unpublished_rungs",  # issue 9: the lowest rung published apart
    "RESTART_UNPUBLISHED",
    "END_UNPUBLISHED",
]


@dataclass(frozen=True)
class NewRendition:
    name: str
    position: int
    width: int
    height: int
    frame_rate: float
    video_codec: str
    video_kbps: int
    audio_kbps: int
    bandwidth: int
    average_bandwidth: int
    codecs: str
    needs_upscale: bool
    ladder_reason: str | None
    # sql/0010: learned x2 passes; a 20K tile's grid position and place in the frame.
    upscale_passes: int = 0
    tile_row: int | None = None
    tile_col: int | None = None
    tile_x: int | None = None
    tile_y: int | None = None
    frame_width: int | None = None
    frame_height: int | None = None
    # sql/0011: HLS VIDEO-RANGE (SDR, PQ, HLG) and the segments' container (ts, fmp4).
    video_range: str = "SDR"
    container: str = "ts"


@dataclass(frozen=True)
class NewSegment:
    rendition: str
    sequence: int
    source_sequence: int
    duration: float
    bytes: int
    frames: int
    path: str
    discontinuity: bool
    program_date_time: datetime
    target_duration: int
    discontinuity_sequence: int
    timings: dict[str, float | str] = field(default_factory=dict)  # ms per stage; worker
    gap: bool = False  # a shed rung's placeholder: EXT-X-GAP, no object (sql/0013)


@dataclass(frozen=True)
class NewModeration:
    source_sequence: int
    frames_scored: int
    scores: list[float]
    max_score: float | None
    flagged: bool
    model: str | None
    error: str | None


@dataclass(frozen=True)
class NewQuality:
    source_sequence: int
    start_time: float
    duration: float
    frames: int
    input_fps: float | None
    input_kbps: float | None
    latency_ms: float | None
    retries: int
    dropped: bool
    error: str | None
    quality_level: int = 0  # backpressure level it was encoded at (sql/0013)
    shed: list[str] = field(default_factory=list)  # renditions it was not encoded to


@dataclass(frozen=True)
class Resume:
    """Where a stream's pipeline goes on after an earlier publish (or an actor restart)."""

    next_source_sequence: int = 0
    timeline_end: float | None = None  # None: nothing was ever segmented
    next_sequence: int = 0
    target_duration: int = 0
    discontinuities: int = 0  # discontinuity tags published so far


async def lock_status(conn: AsyncConnection, stream_id: UUID) -> str | None:
    """The stream's status, holding its row until commit: an `end` cannot commit
    between this check and the segments published in the same transaction.
    The same lock the event triggers of 0002 take, so no new lock order appears."""
    return (
        await conn.execute(
            text("SELECT status FROM live_streams WHERE id = :s FOR NO KEY UPDATE"),
            {"s": stream_id},
        )
    ).scalar()


async def add_renditions(conn: AsyncConnection, stream_id: UUID, rows: list[NewRendition]) -> None:
    await conn.execute(
        text(
            "INSERT INTO stream_renditions (stream_id, name, position, width, height, frame_rate,"
            " video_codec, video_kbps, audio_kbps, bandwidth, average_bandwidth, codecs,"
            " needs_upscale, ladder_reason, upscale_passes, tile_row, tile_col, tile_x, tile_y,"
            " frame_width, frame_height, video_range, container) VALUES (:stream_id, :name,"
            " :position, :width, :height,"
            " :frame_rate, :video_codec, :video_kbps, :audio_kbps, :bandwidth, :average_bandwidth,"
            " :codecs, :needs_upscale, :ladder_reason, :upscale_passes, :tile_row, :tile_col,"
            " :tile_x, :tile_y, :frame_width, :frame_height, :video_range, :container)"
            " ON CONFLICT DO NOTHING"
        ),
        [{"stream_id": stream_id, **asdict(r)} for r in rows],
    )


async def renditions(
    conn: AsyncConnection, stream_id: UUID, *, tiles: bool = False
) -> list[dict[str, Any]]:
    """The master playlist's rows, highest first; empty if none or not visible.
    `tiles`: also a 20K stream's tiles (sql/0010), after the ladder."""
    rows = await conn.execute(
        text(
            "SELECT name, width, height, frame_rate, video_codec,"
            " video_kbps, audio_kbps, bandwidth,"
            " average_bandwidth, codecs, needs_upscale, ladder_reason, upscale_passes,"
            " tile_row, tile_col, tile_x, tile_y, frame_width, frame_height, video_range,"
            " container FROM stream_renditions"
            " WHERE stream_id = :s AND (CAST(:tiles AS boolean) OR tile_row IS NULL)"
            " ORDER BY position"
        ),
        {"s": stream_id, "tiles": tiles},
    )
    return [dict(r) for r in rows.mappings()]


async def renditions_of(
    conn: AsyncConnection, stream_ids: list[UUID]
) -> dict[UUID, list[dict[str, Any]]]:
    """`renditions(..., tiles=True)` of several streams in one read (a page of streams)."""
    rows = await conn.execute(
        text(
            "SELECT stream_id, name, width, height, frame_rate, video_codec, video_kbps,"
            " audio_kbps, bandwidth, average_bandwidth, codecs, needs_upscale, ladder_reason,"
            " upscale_passes, tile_row, tile_col, tile_x, tile_y, frame_width, frame_height,"
            " video_range, container FROM stream_renditions WHERE stream_id = ANY(:ids)"
            " ORDER BY stream_id, position"
        ),
        {"ids": stream_ids},
    )
    out: dict[UUID, list[dict[str, Any]]] = {}
    for r in rows.mappings():
        out.setdefault(r["stream_id"], []).append(dict(r))
    return out


async def add_segments(conn: AsyncConnection, stream_id: UUID, rows: list[NewSegment]) -> None:
    await conn.execute(
        text(
            "INSERT INTO stream_segments (stream_id, rendition, sequence,"
            " source_sequence, duration,"
            " bytes, frames, path, discontinuity, program_date_time, target_duration,"
            " discontinuity_sequence, timings, gap) VALUES (:stream_id, :rendition, :sequence,"
            " :source_sequence, :duration, :bytes, :frames, :path, :discontinuity,"
            " :program_date_time, :target_duration, :discontinuity_sequence,"
            " CAST(:timings AS jsonb), :gap) ON CONFLICT DO NOTHING"
        ),
        [{"stream_id": stream_id, **asdict(r), "timings": json.dumps(r.timings)} for r in rows],
    )


async def playlist(
    conn: AsyncConnection, stream_id: UUID, rendition: str, last: int | None
) -> list[dict[str, Any]]:
    """A rendition's segments in order: the `last` newest (a live window) or all."""
    rows = await conn.execute(
        text(
            "SELECT * FROM (SELECT sequence, duration, bytes, discontinuity, program_date_time,"
            " target_duration, discontinuity_sequence, gap, path FROM stream_segments"
            " WHERE stream_id = :s AND rendition = :r ORDER BY sequence DESC LIMIT :n) w"
            " ORDER BY sequence"
        ),
        {"s": stream_id, "r": rendition, "n": last},
    )
    return [dict(r) for r in rows.mappings()]


async def segment(
    conn: AsyncConnection, stream_id: UUID, rendition: str, sequence: int
) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                text(
                    "SELECT path, bytes FROM stream_segments"
                    " WHERE stream_id = :s AND rendition = :r AND sequence = :q AND NOT gap"
                ),
                {"s": stream_id, "r": rendition, "q": sequence},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def init_segment(
    conn: AsyncConnection, stream_id: UUID, rendition: str
) -> dict[str, Any] | None:
    """An fMP4 rendition's init segment (sql/0011): `{path}` beside its newest `.m4s`
    (one init per rendition: media.cmaf), or None (not fMP4, nothing yet, not visible)."""
    row = (
        await conn.execute(
            text(
                "SELECT path FROM stream_segments WHERE stream_id = :s AND rendition = :r"
                " AND NOT gap AND path LIKE '%.m4s' ORDER BY sequence DESC LIMIT 1"
            ),
            {"s": stream_id, "r": rendition},
        )
    ).first()
    return {"path": row[0].rsplit("/", 1)[0] + "/init.mp4"} if row else None


async def add_moderation(conn: AsyncConnection, stream_id: UUID, row: NewModeration) -> None:
    await conn.execute(
        text(
            "INSERT INTO segment_moderation (stream_id, source_sequence, frames_scored, scores,"
            " max_score, flagged, model, error) VALUES (:stream_id, :source_sequence,"
            " :frames_scored, :scores, :max_score, :flagged, :model, :error)"
            " ON CONFLICT DO NOTHING"
        ),
        {"stream_id": stream_id, **asdict(row)},
    )


async def add_quality(conn: AsyncConnection, stream_id: UUID, row: NewQuality) -> None:
    await conn.execute(
        text(
            "INSERT INTO stream_quality (stream_id, source_sequence, start_time, duration, frames,"
            " input_fps, input_kbps, latency_ms, retries, dropped, error, quality_level, shed)"
            " VALUES (:stream_id, :source_sequence, :start_time, :duration, :frames, :input_fps,"
            " :input_kbps, :latency_ms, :retries, :dropped, :error, :quality_level, :shed)"
            " ON CONFLICT DO NOTHING"
        ),
        {"stream_id": stream_id, **asdict(row)},
    )


async def resume(conn: AsyncConnection, stream_id: UUID) -> Resume:
    """What the pipeline needs to continue a stream's numbering and timeline (the actor
    acts as the owner, who may read the quality rows)."""
    q = (
        (
            await conn.execute(
                text(
                    "SELECT max(source_sequence) AS seq, max(start_time + duration) AS end_time"
                    " FROM stream_quality WHERE stream_id = :s"
                ),
                {"s": stream_id},
            )
        )
        .mappings()
        .one()
    )
    last = (
        (
            await conn.execute(
                text(
                    "SELECT sequence, target_duration, discontinuity_sequence, discontinuity"
                    " FROM stream_segments WHERE stream_id = :s ORDER BY sequence DESC LIMIT 1"
                ),
                {"s": stream_id},
            )
        )
        .mappings()
        .first()
    )
    return Resume(
        next_source_sequence=0 if q["seq"] is None else q["seq"] + 1,
        timeline_end=q["end_time"],
        next_sequence=0 if last is None else last["sequence"] + 1,
        target_duration=0 if last is None else last["target_duration"],
        discontinuities=0
        if last is None
        else (last["discontinuity_sequence"] + int(last["discontinuity"])),
    )


# The gaps' error texts (`gap_unpublished_rungs`), by what kept the rungs from following.
RESTART_UNPUBLISHED = "not published before a restart"
END_UNPUBLISHED = "not published before the stream ended"

# A segment's upper rungs are published after its lowest (`actors.lowest_first`); an
# ingest restart or the stream's end in between leaves them without a row at that
# sequence number. The lowest rung is `media.rendition.lowest_rung`'s: the last SDR rung
# that is not a tile (HDR twins come after the SDR rungs and are published with the rest).
_GAP_UNPUBLISHED = """
INSERT INTO stream_segments (stream_id, rendition, sequence, source_sequence, duration,
    bytes, frames, path, discontinuity, program_date_time, target_duration,
    discontinuity_sequence, timings, gap)
SELECT s.stream_id, r.name, s.sequence, s.source_sequence, s.duration, 0, 0,
    s.stream_id::text || '/' || r.name || '/' || regexp_replace(s.path, '^.*/', ''),
    s.discontinuity, s.program_date_time, s.target_duration, s.discontinuity_sequence,
    jsonb_build_object('error', CAST(:error AS text)), true
FROM stream_segments s
JOIN stream_renditions r ON r.stream_id = s.stream_id AND r.name <> s.rendition
WHERE s.stream_id = :s AND s.sequence >= :since
  AND s.rendition = (SELECT name FROM stream_renditions WHERE stream_id = :s
                     AND tile_row IS NULL
                     ORDER BY video_range = 'SDR' DESC, position DESC LIMIT 1)
  AND NOT EXISTS (SELECT 1 FROM stream_segments x WHERE x.stream_id = s.stream_id
                  AND x.rendition = r.name AND x.sequence = s.sequence)
"""


async def gap_unpublished_rungs(
    conn: AsyncConnection,
    stream_id: UUID,
    recent: int | None = 64,
    *,
    error: str = RESTART_UNPUBLISHED,
) -> int:
    """A gap row (EXT-X-GAP, no object, `error` in its timings) for every rung that has
    no row where the lowest rung has one, among the last `recent` sequence numbers (None:
    all of them): the upper rungs that an ingest restart, or the stream's end, kept from
    being published after their lowest (`actors.lowest_first`), so every rung keeps the
    same media sequence numbers. How many it wrote."""
    since = 0  # no window: sequence numbers start at 0
    if recent is not None:
        last = (
            await conn.execute(
                text("SELECT max(sequence) FROM stream_segments WHERE stream_id = :s"),
                {"s": stream_id},
            )
        ).scalar()
        if last is None:
            return 0
        since = last - recent
    done = await conn.execute(
        text(_GAP_UNPUBLISHED), {"s": stream_id, "since": since, "error": error}
    )
    return int(done.rowcount or 0)
