"""A stream's ladder from its settings and a source: the one derivation that both the
encoder path (`SegmentPublisher.ladder`, on the first segment) and the API's plan
(`serve_app.renditions.planned`, before it) call, so what a stream is said to get and
what it gets cannot drift apart.

    ladder_for     the tier's plan (`media.tier_plan.plan`): bitrate, AI, 20K tiles,
                   `media_max_height`
    stream_ladder  ladder_for, then enableHDR's HEVC twins (`media.hdr.hdr_renditions`),
                   then the rungs a worker's memory cannot hold refused
                   (`actors.media_memory.within_memory`)

Invariants:
- No Ray, no database: plain functions of the stream row, the settings and the source.
- The source's colour is asked for only when enableHDR is on (probing decodes a frame).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from actors.media_memory import Refusal, within_memory
from lumalive.settings import Settings
from media.hdr import VideoRange, hdr_renditions
from media.ladder import Rendition
from media.tier_plan import plan

__all__ = ["StreamLadder", "ladder_for", "stream_ladder"]


class StreamLadder(NamedTuple):
    """What a stream is encoded to, why it is less than its tier, and what memory refused."""

    renditions: tuple[Rendition, ...]
    reason: str | None
    refused: tuple[Refusal, ...]


def ladder_for(
    stream: dict[str, Any], settings: Settings, width: int, height: int, fps: float
) -> tuple[tuple[Rendition, ...], str | None]:
    """The stream's renditions for a source size (`media.tier_plan.plan`): its quality tier
    on top at the stream's bitrate, rungs above the source only with AI enhancement,
    20K tiles after the ladder, none above `media_max_height`."""
    ai = stream.get("ai_features") or {}
    return plan(
        width,
        height,
        stream["quality"],
        bool(ai.get("enhancement")),
        fps=fps or 30.0,
        bitrate_kbps=stream.get("bitrate"),
        max_height=settings.media_max_height,
    )


def stream_ladder(
    stream: dict[str, Any],
    settings: Settings,
    source: tuple[int, int],
    fps: float,
    colour: Callable[[], VideoRange],
    *,
    log_refusals: bool = True,
) -> StreamLadder:
    """The renditions a stream gets from a `source` (width, height) at `fps`: its ladder,
    with enableHDR an HEVC Main10 twin of each rung in the range `colour()` says the
    source is in (HLG for an SDR source), less the rungs over a worker's memory budget.
    `log_refusals=False` for a plan shown in an answer (the encoder path logs them)."""
    planned, reason = ladder_for(stream, settings, source[0], source[1], fps)
    if (stream.get("ai_features") or {}).get("hdr"):  # enableHDR: media.hdr
        planned = hdr_renditions(planned, colour())
    # Rungs a worker's memory cannot hold are refused now, not by the OOM killer.
    return StreamLadder(
        *within_memory(stream, settings, planned, reason, source, log_refusals=log_refusals)
    )
