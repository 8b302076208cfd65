"""Encode once (issue 10): a segment's classic HLS rungs that the stream's streaming
encoder carries are taken from it (its packets remuxed into MPEG-TS, see
`media.llhls.classic`), not encoded a second time on the pool.

    cut ──▶ pool job without the LL rungs (moderation, the rungs above, tiles)  ─┐
        └─▶ ClassicHandoff.classic(sequence): the LL rungs' TS ── stored ─────────┴─▶ one
            (not made, late, or not the segment's frames: a pool job for them)       outcome

Why this and not the classic playlist listing the LL fMP4 segments: the classic path
then stays TS and everything downstream of the outcome (the publisher's rows, gaps,
moderation, discontinuities, retention, DVR, VOD, the poster, analytics) is unchanged:
it cannot tell which rungs came from where, except by `timings["llhls_rungs"]`.

Invariants:
- Per segment, each rung is encoded exactly once: by the streaming encoder, or (if
  that did not make it whole) by the pool. Taken is whole: the segment's frame count,
  starting at the segment's first frame, no frame decoded with errors (the pool then
  refuses the segment as corrupt, as without encode once).
- Only the wait is bounded (`wait_s`): an encoder that fails answers at once, one
  that fell behind by more than that loses the segment's rungs to the pool; after a
  failure the pool carries those rungs for the rest of the input
  (`ClassicHandoff.carries`; the encoder's side is `actors.classic_handoff`).
- The outcome names every object stored for it (taken ones too), so a segment that
  is dropped, withheld or lost has them deleted by the publisher (`discard`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from actors.live_encoder import LiveEncoder
from actors.media_worker import (
    EncodedRendition,
    SegmentJob,
    SegmentOutcome,
    SegmentResult,
    segment_key,
)
from actors.tile_jobs import run_tiled
from media.llhls.classic import ClassicSegment
from media.segmenter import SourceSegment

__all__ = ["run_segment", "wait_s"]

log = logging.getLogger(__name__)

Run = Callable[[SegmentJob, bytes], Coroutine[Any, Any, SegmentOutcome]]


def wait_s(segment_seconds: float) -> float:
    """How long a cut segment waits for the streaming encoder's classic TS: the
    encoder makes it one frame after the cut unless it is behind real time."""
    return 2 * segment_seconds + 2.0


async def run_segment(
    run: Run, job: SegmentJob, segment: SourceSegment, live: LiveEncoder | None
) -> SegmentOutcome:
    """The segment's outcome, its LL rungs taken from `live` where it made them."""
    handoff = live.handoff if live is not None else None
    carried = handoff.carried(job.renditions, segment) if handoff is not None else set()
    if handoff is None or not carried:
        return await run_tiled(run, job, segment.data)
    pool_job = _only(job, [r.name for r in job.renditions if r.name not in carried])
    pool = asyncio.create_task(_run(run, pool_job, segment.data))
    try:
        t = time.perf_counter()
        classic = await handoff.classic(segment.sequence, wait_s(handoff.segment_seconds))
        taken = _whole(classic or {}, carried, segment)
        waited, t = _ms(t), time.perf_counter()
        puts = {segment_key(job.stream_id, s.rendition, job.source_sequence): s.data for s in taken}
        try:
            stored = await handoff.store(puts)
        except Exception:  # noqa: BLE001 - the pool encodes them instead
            log.exception("storing the classic segments of %s failed", job.stream_id)
            taken, stored = [], []
        spent = {"llhls_wait": waited, "llhls_store": _ms(t)}
    except BaseException:
        pool.cancel()
        raise
    missing = [name for name in carried if name not in {s.rendition for s in taken}]
    back = _only(job, missing, moderation_fps=0.0)
    fallback = await _outcome(_run(run, back, segment.data)) if missing else None
    return _merge(job, await _outcome(pool), stored, taken, fallback, spent)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


async def _outcome(work: Awaitable[SegmentOutcome]) -> SegmentOutcome:
    """A failed job as an error outcome, so the merged one still names what was
    stored (the publisher then deletes it)."""
    try:
        return await work
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - the pool gave up: the segment is dropped
        return SegmentOutcome(SegmentResult(0, error=f"{type(e).__name__}: {e}"))


def _only(job: SegmentJob, names: list[str], **changes: Any) -> SegmentJob:
    keep = set(names)
    renditions = tuple(r for r in job.renditions if r.name in keep)
    return dataclasses.replace(job, renditions=renditions, **changes)


async def _run(run: Run, job: SegmentJob, data: bytes) -> SegmentOutcome:
    """The pool's job; nothing to do (no rung, no moderation) is not sent."""
    if not job.renditions and job.moderation_fps <= 0:
        # The worker's stages, none of them run (`timings` has the same keys everywhere).
        queue = max(0.0, time.time() - job.submitted_at) * 1000 if job.submitted_at else 0.0
        stages = dict.fromkeys(("moderate", "enhance", "encode", "store", "cpu"), 0.0)
        return SegmentOutcome(
            SegmentResult(job.source_sequence, timings={"queue": round(queue, 1), **stages})
        )
    return await run_tiled(run, job, data)


def _whole(
    classic: dict[str, ClassicSegment], carried: set[str], segment: SourceSegment
) -> list[ClassicSegment]:
    """The classic segments that hold exactly the source segment's frames."""
    half_frame = 0.5 / (segment.fps or 30.0)
    return [
        s
        for name, s in classic.items()
        if name in carried
        and s.data
        and not s.damaged
        and s.frames == segment.frames
        and abs(s.start - segment.start_pts_seconds) < half_frame
    ]


def _merge(
    job: SegmentJob,
    pool: SegmentOutcome,
    stored: list[str],
    taken: list[ClassicSegment],
    fallback: SegmentOutcome | None,
    spent: dict[str, float],
) -> SegmentOutcome:
    """One outcome, renditions in ladder order, as if one job had made them all."""
    encoded = {e.name: e for e in pool.result.renditions}
    for key, s in zip(stored, taken, strict=True):
        encoded[s.rendition] = EncodedRendition(
            s.rendition, key, len(s.data), s.duration, s.frames, s.width, s.height, s.codecs
        )
    errors = [o.result.error for o in (pool, fallback) if o is not None and o.result.error]
    if fallback is not None:
        encoded.update({e.name: e for e in fallback.result.renditions})
    order = [r.name for r in job.renditions]
    result = dataclasses.replace(
        pool.result,
        source_sequence=job.source_sequence,
        renditions=tuple(encoded[n] for n in order if n in encoded),
        timings={**pool.result.timings, **spent, "llhls_rungs": float(len(taken))},
        error="; ".join(errors) or None,
        worker=pool.result.worker or (fallback.result.worker if fallback else "") or "llhls",
    )
    retries = pool.retries + (fallback.retries if fallback else 0)
    return SegmentOutcome(result, retries)
