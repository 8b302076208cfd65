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

The jobs are marked (`SegmentJob.part`: "lowest", "upper"; an unsplit job stays
"whole"), so the pool can favour lowest rungs (`actors.segment_pool`): the lane (on by
default) lets a worker running an upper-rung job run one lowest rung beside it, so a
lowest rung never waits for a whole upper-rung job, even on a pool of one worker; the
reserve (off by default) keeps a worker of two or more from upper rungs.

Limit: jobs are not preempted by the pool, and the lane is not a CPU of its own: the
upper-rung job beside a lowest rung yields its worker's CPUs between frames while the
lowest rung encodes (`actors.worker_lane.LaneYield`; without the yield both run at
once, each slower: docs/media.md, *Backpressure*), and a lowest rung waits when every
worker's lane is taken or no worker runs an upper rung (behind older lowest rungs and
whole jobs, as before).
Without the lane, a pool of one worker has no worker to keep, so a lowest rung cut as
an upper-rung job starts waits for all of it. Splitting the rest per rung would bound
that wait by the longest one rung's job instead, without a second job on a worker;
`bench/split_cost.py` measured it (1080p25 ladder 1080p/720p/480p/360p, veryfast, one
thread, loaded 2-core box): 1.04x the CPU of two jobs (0.99x in another run: a 1080p
decode is small next to its veryfast encodes), and the worst wait 0.52x (1284 vs 2489
CPU ms per 2 s segment: the 1080p job is half the rest). Not built, because:
- the lane bounds the wait by the lowest rung's own encode (the job beside it
  yields), less than any per-rung split, and a pool of two or more may add the reserve,
  where a per-rung split bounds nothing more and only costs decodes (more where
  decoding weighs like encoding: 1.28-1.41x at 480p ultrafast);
- the AI rungs share learned passes within one job (`media.shared_passes`: the 4K
  pass of 8K); split per rung they would compute them again, so they must stay one job;
- backpressure counts waiting jobs (`Backlog.waiting`): three upper jobs per segment
  would shed at the first segment with two of them waiting, sooner than a pool that
  is merely one rung behind deserves; it would have to count segments instead;
- the publisher gaps all of a segment's upper rungs when their job fails
  (`segment_rows.rest_rows`); per-rung outcomes need a merge that keeps what
  succeeded and deletes what a failed part stored (as `actors.tile_jobs` does whole).
With the lane off, on one worker the lowest rung's stall stays bounded by one rest job
(plus its own encode) until backpressure sheds the top rung.

Invariants:
- The lowest rung is `media.rendition.lowest_rung` (the last SDR rung that is not a
  tile; `backpressure.shedding_steps` never sheds it); a job with one rendition, or no
  ordinary rung, is not split. A job of the lowest rung alone (backpressure shed the
  rest, or the ladder has one rung) is still `part="lowest"`, so it may take a lane: as
  "whole" it waited for a running upper-rung job (bench/overload.py: 545 ms in the
  pool's queue, the longest stall of a run with the lane's yield).
- Moderation runs once per segment, in the lowest rung's job: its verdict is known
  before anything of the segment is published.
- The rest job never moderates and is never empty.
- The lowest rung's job is `part="lowest"`, the rest's `part="upper"` (kept by its
  retries and by the tile jobs split from it: `actors.tile_jobs`).
"""

from __future__ import annotations

import dataclasses

from actors.media_worker import SegmentJob
from media.rendition import lowest_rung

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
    lowest = lowest_rung(job.renditions)
    if lowest is None:
        return job, None
    if len(job.renditions) == 1:  # the rest shed, or a one-rung ladder: still the lowest
        return dataclasses.replace(job, part="lowest"), None
    first = dataclasses.replace(job, renditions=(lowest,), part="lowest")
    rest = dataclasses.replace(
        job,
        renditions=tuple(r for r in job.renditions if r is not lowest),
        moderation_fps=0.0,
        defer_s=REST_DEFER_SEGMENTS * segment_s,
        part="upper",
    )
    return first, rest
