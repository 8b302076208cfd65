"""Which streams get a streaming encoder (LL-HLS), and which rungs of their ladder it
carries. One place, so the encoder (`actors.live_encoder`), the pipeline that makes it
and the encode-once handoff (`actors.classic_handoff`) agree on the rungs.

Invariants:
- The LL rungs are a subset of the stream's own ladder (`actors.stream_ladder.ladder_for`:
  same names, sizes and rates), never an AI-upscaled rung, a tile or an HEVC rung, none
  above `llhls_max_height` (short side).
- No Ray, no database: plain functions of the stream row and the settings.
"""

from __future__ import annotations

from typing import Any

from actors.stream_ladder import ladder_for
from lumalive.settings import Settings
from media.ladder import Rendition

__all__ = ["ll_renditions", "wants_low_latency"]


def wants_low_latency(stream: dict[str, Any], settings: Settings) -> bool:
    """Latency mode `low` (the default) on a deployment with LL rungs at all."""
    return stream.get("latency_mode", "low") == "low" and settings.llhls_max_height > 0


def ll_renditions(
    stream: dict[str, Any], settings: Settings, width: int, height: int, fps: float
) -> tuple[Rendition, ...]:
    """The rungs of the stream's ladder the streaming encoder carries: H.264, not
    upscaled, not tiles, up to `llhls_max_height` (short side) and `media_max_height`."""
    ladder, _ = ladder_for(stream, settings, width, height, fps)
    cap = settings.llhls_max_height
    return tuple(
        r
        for r in ladder
        if min(r.width, r.height) <= cap
        and r.codec == "h264"
        and not r.needs_upscale
        and r.tile is None
    )
