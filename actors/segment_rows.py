"""The rows one segment's publication writes, as pure functions of what was cut and
what the worker returned (`actors.segment_publisher` writes them): the quality row, the
moderation row, shed rungs' gaps, and the rows of the rungs published after the lowest
(`rest_rows`). No I/O here, so each rule is testable alone.

Invariants:
- Every row of a segment shares its sequence number, timing and discontinuity (gaps and
  later rungs are copies of a published rung's row with their own rendition and object).
- A gap names the key its object would have had and holds no bytes or frames.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

from actors.media_worker import ModerationResult, SegmentOutcome, segment_key
from lumalive.store import media
from media.ladder import Rendition
from media.segmenter import SourceSegment

__all__ = [
    "Cut",
    "Placed",
    "Verdict",
    "as_gap",
    "gap_rows",
    "moderation_row",
    "quality_row",
    "rest_rows",
    "tile_columns",
    "withheld",
]


@dataclass(frozen=True, slots=True)
class Cut:
    """A segment as it was cut: what publishing it needs besides the worker's outcome."""

    segment: SourceSegment
    cut_at: float  # time.time(): the segment's last byte is in
    wall_start: float  # time.time() of its first frame, for EXT-X-PROGRAM-DATE-TIME
    # Backpressure (actors/backpressure.py): the level it is encoded at, the rungs it
    # sheds (published as gaps), and the `quality_degraded` event it records, if the
    # level changed with it.
    level: int = 0
    shed: tuple[str, ...] = ()
    quality_change: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What moderation decided for one segment."""

    moderation: ModerationResult | None  # None: not moderated
    flagged: bool  # scored over `nsfw_threshold`
    end: bool  # ... and so withheld, and the stream ended for it (`nsfw_end_stream`)


def tile_columns(r: Rendition) -> dict[str, int]:
    """A 20K tile's place in the frame (sql/0010); nothing for an ordinary rendition."""
    t = r.tile
    if t is None:
        return {}
    return {
        "tile_row": t.row,
        "tile_col": t.col,
        "tile_x": t.x,
        "tile_y": t.y,
        "frame_width": t.frame_width,
        "frame_height": t.frame_height,
    }


def quality_row(cut: Cut, outcome: SegmentOutcome) -> media.NewQuality:
    """The segment's `stream_quality` row (as published or dropped)."""
    seg, error = cut.segment, outcome.result.error
    return media.NewQuality(
        source_sequence=seg.sequence,
        start_time=seg.start_pts_seconds,
        duration=seg.duration,
        frames=seg.frames,
        input_fps=round(seg.frames / seg.duration, 3) if seg.duration else None,
        input_kbps=round(seg.size * 8 / seg.duration / 1000, 1) if seg.duration else None,
        latency_ms=round((time.time() - cut.cut_at) * 1000, 1),
        retries=outcome.retries,
        dropped=error is not None,
        error=error,
        quality_level=cut.level,
        shed=list(cut.shed),
    )


def gap_rows(cut: Cut, rows: list[media.NewSegment], stream_id: str) -> list[media.NewSegment]:
    """The shed rungs' placeholders for a published segment: its timing, no object."""
    if not cut.shed or not rows:
        return []
    like = rows[-1]  # any encoded rung: all share the segment's sequence and timing
    return [
        dataclasses.replace(
            like,
            rendition=name,
            bytes=0,
            frames=0,
            path=segment_key(stream_id, name, cut.segment.sequence),
            gap=True,
        )
        for name in cut.shed
    ]


@dataclass(frozen=True, slots=True)
class Placed:
    """A segment published in its lowest rung: the rungs still to come, and that rung's
    row (the segment's sequence number, timing and discontinuity, shared by all rungs)."""

    like: media.NewSegment
    pending: tuple[str, ...]


def rest_rows(placed: Placed, outcome: SegmentOutcome, stream_id: str) -> list[media.NewSegment]:
    """The pending rungs' rows: as encoded, or gaps if the job failed or lacks one."""
    result, like = outcome.result, placed.like
    encoded = {} if result.error else {e.name: e for e in result.renditions}
    timings: dict[str, float | str] = {
        **result.timings,
        "retries": outcome.retries,
        "worker": result.worker,
    }
    rows = []
    for name in placed.pending:
        e = encoded.get(name)
        if e is None:
            gap = dataclasses.replace(
                like, rendition=name, path=segment_key(stream_id, name, like.source_sequence)
            )
            rows.append(as_gap(gap, result.error or "not encoded"))
            continue
        rows.append(
            dataclasses.replace(
                like,
                rendition=name,
                duration=e.duration,
                bytes=e.size,
                frames=e.frames,
                path=e.key,
                target_duration=max(like.target_duration, math.ceil(e.duration)),
                timings=timings,
            )
        )
    return rows


def as_gap(row: media.NewSegment, error: str) -> media.NewSegment:
    """A rung's row as a gap (no object): its job failed, or its rows could not be written."""
    return dataclasses.replace(row, bytes=0, frames=0, gap=True, timings={"error": error})


def moderation_row(sequence: int, verdict: Verdict) -> media.NewModeration:
    mod = verdict.moderation
    assert mod is not None
    return media.NewModeration(
        sequence,
        mod.frames_scored,
        list(mod.scores),
        mod.max_score,
        verdict.flagged,
        mod.model,
        mod.error,
    )


def withheld(q: media.NewQuality) -> media.NewQuality:
    """A withheld segment's quality row: counted as dropped, with the reason."""
    return dataclasses.replace(
        q, dropped=True, error="withheld: moderation score over the threshold"
    )
