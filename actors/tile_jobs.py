"""One segment of a tiled stream (20K) as several jobs on the media pool, one outcome.

The ladder (8K and below) is one job, as for every stream; each tile is a job of its
own, so the 25 tiles of a segment are enhanced and encoded in parallel on whatever
workers are free (tile x segment is the unit of work). Every tile job carries the
same segment bytes and frame count, so every tile has the ladder's segment
boundaries and frames.

Invariants:
- A segment is published with all its tiles or not at all: if one job fails (a bad
  segment, a worker that kept dying), the merged outcome is an error that still lists
  what the other jobs stored, so the publisher deletes those objects (`discard`). No
  segment ever reads as 20K without its tiles.
- Moderation runs once per segment, in the ladder job.
- Without tiles, a job goes to the pool unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from actors.media_worker import SegmentJob, SegmentOutcome, SegmentResult

__all__ = ["run_tiled", "split"]

Run = Callable[[SegmentJob, bytes], Coroutine[Any, Any, SegmentOutcome]]


def split(job: SegmentJob) -> tuple[SegmentJob, tuple[SegmentJob, ...]]:
    """The ladder's job and one job per tile (unmoderated)."""
    ladder = tuple(r for r in job.renditions if r.tile is None)
    tiles = tuple(
        dataclasses.replace(job, renditions=(r,), moderation_fps=0.0)
        for r in job.renditions
        if r.tile is not None
    )
    return dataclasses.replace(job, renditions=ladder), tiles


async def run_tiled(run: Run, job: SegmentJob, data: bytes) -> SegmentOutcome:
    """Run a segment's jobs at once and merge their outcomes (ladder first, then tiles
    in grid order)."""
    ladder, tiles = split(job)
    if not tiles:
        return await run(job, data)
    jobs = [ladder, *tiles] if ladder.renditions else list(tiles)
    done = await asyncio.gather(*(run(j, data) for j in jobs), return_exceptions=True)
    return _merge(job, jobs, done)


def _merge(
    job: SegmentJob, jobs: Sequence[SegmentJob], done: Sequence[SegmentOutcome | BaseException]
) -> SegmentOutcome:
    outcomes = [d for d in done if isinstance(d, SegmentOutcome)]
    results = [o.result for o in outcomes]
    errors = [
        f"{_label(j)}: {d.result.error}" if isinstance(d, SegmentOutcome) else f"{_label(j)}: {d!r}"
        for j, d in zip(jobs, done, strict=True)
        if not isinstance(d, SegmentOutcome) or d.result.error is not None
    ]
    for d in done:  # a cancellation is not a segment's failure: pass it on
        if isinstance(d, asyncio.CancelledError):
            raise d
    first = results[0] if results else SegmentResult(job.source_sequence)
    merged = SegmentResult(
        job.source_sequence,
        renditions=tuple(e for r in results for e in r.renditions),
        moderation=next((r.moderation for r in results if r.moderation is not None), None),
        timings=_timings(first, results[1:]),
        error="; ".join(errors) if errors else None,
        worker=first.worker,
    )
    return SegmentOutcome(merged, max((o.retries for o in outcomes), default=0))


def _label(job: SegmentJob) -> str:
    names = [r.name for r in job.renditions]
    return names[0] if len(names) == 1 else "ladder"


def _timings(first: SegmentResult, tiles: Sequence[SegmentResult]) -> dict[str, Any]:
    """The first job's stage timings, plus the tiles' summed (`tiles_*`, ms) and count."""
    out: dict[str, Any] = dict(first.timings)
    if tiles:
        out["tiles"] = len(tiles)
        for stage in ("enhance", "encode", "store", "cpu"):
            out[f"tiles_{stage}"] = round(sum(float(r.timings.get(stage, 0)) for r in tiles), 1)
    return out
