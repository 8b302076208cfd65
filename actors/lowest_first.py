"""A segment's lowest rung as a job of its own, so it is published without waiting for
the slower rungs above it (issue 9: the live playlist never stalls because of a slow
rung; the lowest rung is the one every player can fall back to).

A segment's work is two jobs on the pool: the lowest rung with the moderation, and
every other rung (and the 20K tiles, `actors.tile_jobs`) unmoderated. The second is
deferred by `REST_DEFER_SEGMENTS` segment durations in the pool's queue
(`SegmentJob.defer_s`), so a busy pool encodes every waiting lowest rung before any
upper rung (short of that bound), while an idle pool runs both at once.

Cost: each job decodes the segment, so the source is decoded twice
(`bench/split_cost.py` measures it); the lowest rung's encode is not repeated.

Limit: jobs are not preempted. On a pool whose every worker is running an upper-rung
job, the next lowest rung waits for one of them to finish (bench/overload.py on one
worker). A worker slot kept for lowest-rung jobs would remove that wait.

Invariants:
- The lowest rung is the last rendition that is not a tile (`backpressure.shedding_steps`
  never sheds it); a job with one rendition, or no ordinary rung, is not split.
- Moderation runs once per segment, in the lowest rung's job: its verdict is known
  before anything of the segment is published.
- The rest job never moderates and is never empty.
"""

from __future__ import annotations

import dataclasses

from actors.media_worker import SegmentJob

__all__ = ["REST_DEFER_SEGMENTS", "split_lowest"]

# A segment's upper rungs wait behind the lowest rungs of the segments cut within this
# many segment durations after it; after that they go first, so they are late, not
# starved. Long on purpose: with a short one (3 was measured), a backlog of upper-rung
# jobs older than that runs back to back ahead of every new lowest rung, and the lowest
# rung's playlist stalls for several of them (bench/overload.py, backpressure off); under
# a lasting overload backpressure sheds the upper rungs well before this.
REST_DEFER_SEGMENTS = 30.0


def split_lowest(job: SegmentJob, segment_s: float) -> tuple[SegmentJob, SegmentJob | None]:
    """The lowest rung's job (moderated) and the job of the rest (deferred), or the job
    unchanged and None when there is nothing to split."""
    rungs = [r for r in job.renditions if r.tile is None]
    if len(job.renditions) < 2 or not rungs:
        return job, None
    lowest = rungs[-1]
    first = dataclasses.replace(job, renditions=(lowest,))
    rest = dataclasses.replace(
        job,
        renditions=tuple(r for r in job.renditions if r is not lowest),
        moderation_fps=0.0,
        defer_s=REST_DEFER_SEGMENTS * segment_s,
    )
    return first, rest
