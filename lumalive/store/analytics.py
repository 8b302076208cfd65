"""A stream's analytics, from the counters that triggers keep and a few aggregates.

engagement_rate = unique viewers who sent at least one chat message or reaction
                  / unique viewers   (0 when nobody watched)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from lumalive.status import StreamStatus

__all__ = ["for_stream", "media"]


async def for_stream(conn: AsyncConnection, stream: dict[str, Any]) -> dict[str, Any]:
    """Analytics of a stream the actor owns (viewers are readable by the owner only)."""
    sid: UUID = stream["id"]
    counters = stream["analytics"] or {}
    engaged = (
        await conn.execute(
            text(
                "SELECT count(*) FROM (SELECT user_id FROM live_stream_chat WHERE stream_id = :s"
                " UNION SELECT user_id FROM live_stream_reactions WHERE stream_id = :s) e"
                " WHERE user_id IN (SELECT user_id FROM live_stream_viewers WHERE stream_id = :s)"
            ),
            {"s": sid},
        )
    ).scalar_one()
    open_watch = (
        await conn.execute(
            text(
                "SELECT COALESCE(sum(extract(epoch FROM now() - joined_at)), 0)"
                " FROM live_stream_viewers"
                " WHERE stream_id = :s AND left_at IS NULL"
            ),
            {"s": sid},
        )
    ).scalar_one()
    unique = int(counters.get("unique_viewers", 0))
    sessions = (
        await conn.execute(
            text("SELECT count(*) FROM live_stream_viewers WHERE stream_id = :s"), {"s": sid}
        )
    ).scalar_one()
    total_watch = float(counters.get("total_watch_seconds", 0)) + float(open_watch)
    chat_total = int(counters.get("chat_messages", 0))
    reactions = {k: int(v) for k, v in (counters.get("reactions") or {}).items()}
    duration = _duration_s(stream)
    return {
        "stream_id": sid,
        "status": stream["status"],
        "current_viewers": stream["viewers"],
        "peak_viewers": stream["peak_viewers"],
        "unique_viewers": unique,
        "total_watch_time_s": round(total_watch, 1),
        "average_watch_time_s": round(total_watch / sessions, 1) if sessions else 0.0,
        "chat_messages": chat_total,
        "moderated_messages": int(counters.get("moderated_messages", 0)),
        "chat_messages_per_minute": round(chat_total / (duration / 60), 2) if duration else 0.0,
        "reactions": reactions,
        "reaction_total": sum(reactions.values()),
        "engagement_rate": round(engaged / unique, 4) if unique else 0.0,
        "duration_s": duration,
    }


def _duration_s(stream: dict[str, Any]) -> int:
    """Seconds live so far (or in total, once ended)."""
    if stream["status"] == StreamStatus.ENDED:
        return int(stream["duration"])
    if stream["started_at"] is None:
        return 0
    return int((datetime.now(UTC) - stream["started_at"]).total_seconds())


async def media(conn: AsyncConnection, stream_id: UUID) -> dict[str, Any]:
    """Quality monitoring for the owner's analytics: what came in, what was published,
    how long it took, what was dropped or retried, and the highest moderation score."""
    q = (
        (
            await conn.execute(
                text(
                    "SELECT count(*) AS source_segments,"
                    " count(*) FILTER (WHERE NOT dropped) AS published,"
                    " count(*) FILTER (WHERE dropped) AS dropped,"
                    " COALESCE(sum(retries), 0) AS retried,"
                    " COALESCE(sum(duration) FILTER (WHERE NOT dropped), 0) AS published_seconds,"
                    " avg(input_fps) AS input_fps, avg(input_kbps) AS input_kbps,"
                    " percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50,"
                    " percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_p95,"
                    " max(latency_ms) AS latency_max"
                    " FROM stream_quality WHERE stream_id = :s"
                ),
                {"s": stream_id},
            )
        )
        .mappings()
        .one()
    )
    m = (
        (
            await conn.execute(
                text(
                    "SELECT count(*) AS segments, max(max_score) AS max_score,"
                    " count(*) FILTER (WHERE flagged) AS flagged,"
                    " count(*) FILTER (WHERE model IS NULL) AS unavailable,"
                    " sum(frames_scored) AS frames_scored"
                    " FROM segment_moderation WHERE stream_id = :s"
                ),
                {"s": stream_id},
            )
        )
        .mappings()
        .one()
    )

    def rnd(v: Any, n: int = 1) -> float | None:
        return None if v is None else round(float(v), n)

    return {
        "segments": int(q["published"]),
        "source_segments": int(q["source_segments"]),
        "published_seconds": rnd(q["published_seconds"], 2),
        "dropped": int(q["dropped"]),
        "retried": int(q["retried"]),
        "input_fps": rnd(q["input_fps"], 2),
        "input_bitrate_kbps": rnd(q["input_kbps"]),
        "processing_latency_ms": {
            "p50": rnd(q["latency_p50"]),
            "p95": rnd(q["latency_p95"]),
            "max": rnd(q["latency_max"]),
        },
        "moderation": {
            "segments": int(m["segments"]),
            "frames_scored": int(m["frames_scored"] or 0),
            "max_score": rnd(m["max_score"], 4),
            "flagged": int(m["flagged"]),
            "unavailable": int(m["unavailable"]),
        },
    }
