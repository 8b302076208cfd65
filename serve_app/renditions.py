"""A stream's `renditions` in API answers: what it is, or will be, encoded to.

Before its first segment a stream has no ladder: the answer is the plan
(`basis: "plan"`), what the first segment will run (`actors.stream_ladder`: the same
function) for a source at the tier's size (8K, the largest a codec level lets anyone
ingest, for 20K) at 30 fps: the stream's bitrate and AI switch, `media_max_height`,
enableHDR's HEVC twins (`<rung>-hdr`) and the rungs refused for a worker's memory.
Once the first segment fixed the ladder, it is the rows of `stream_renditions`
(`basis: "encoded"`), tiles included, read as the caller (RLS: a withheld VOD's rows
are hidden, and so is its ladder).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from actors.stream_ladder import stream_ladder
from lumalive.settings import Settings
from lumalive.store import media
from media.ladder import Rendition
from media.tier_plan import TIER_FRAME

__all__ = ["planned", "encoded", "with_renditions"]

# The plan's source: the tier's own size; 20K is not ingestible (no codec level
# carries it), so its largest possible source is 8K.
_PLAN_SOURCE = {"1080p": (1920, 1080), "4K": (3840, 2160), "8K": (7680, 4320)}
_PLAN_FPS = 30.0


def planned(stream: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The plan for a stream row (no segment yet): `actors.stream_ladder.stream_ladder`,
    what the first segment will run, for a source at the tier's size; with enableHDR
    the twins of an SDR source (HLG; a PQ source's will be PQ)."""
    tier = stream["quality"]
    source = _PLAN_SOURCE.get(tier) or _PLAN_SOURCE["8K"]
    renditions, reason, _ = stream_ladder(
        dict(stream), settings, source, _PLAN_FPS, lambda: "SDR", log_refusals=False
    )
    notes = [reason]
    if tier in TIER_FRAME:
        notes.insert(0, f"planned for a {source[0]}x{source[1]} source")
    if any(r.video_range != "SDR" for r in renditions):
        notes.append("HDR twins planned as HLG (an SDR or HLG source); a PQ source's are PQ")
    return {
        "basis": "plan",
        "reason": "; ".join(n for n in notes if n) or None,
        "items": [_item(r, r.codecs, None) for r in renditions],
    }


def encoded(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ladder as stored by the stream's first segment (`media.renditions` rows)."""
    return {
        "basis": "encoded",
        "reason": rows[0]["ladder_reason"] if rows else None,
        "items": [_item(Rendition.from_row(r), r["codecs"], r["frame_rate"]) for r in rows],
    }


async def with_renditions(
    conn: AsyncConnection, streams: Sequence[dict[str, Any]], settings: Settings
) -> list[dict[str, Any]]:
    """The stream rows with `renditions`, in one read for all of them."""
    stored = await media.renditions_of(conn, [s["id"] for s in streams]) if streams else {}
    return [
        {**s, "renditions": encoded(stored[s["id"]]) if s["id"] in stored else planned(s, settings)}
        for s in streams
    ]


def _item(r: Rendition, codecs: str, frame_rate: float | None) -> dict[str, Any]:
    t = r.tile
    return {
        "name": r.name,
        "width": r.width,
        "height": r.height,
        "video_kbps": r.video_kbps,
        "audio_kbps": r.audio_kbps,
        "codec": r.codec,
        "codecs": codecs,
        "frame_rate": frame_rate,
        "needs_upscale": r.needs_upscale,
        "upscale_passes": r.upscale_passes,
        "tile": None
        if t is None
        else {
            "row": t.row,
            "col": t.col,
            "x": t.x,
            "y": t.y,
            "frame_width": t.frame_width,
            "frame_height": t.frame_height,
        },
    }
