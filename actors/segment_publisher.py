"""What one published segment writes: its quality row, the moderation decision, its
segment and rendition rows, in one transaction that first checks the stream is live;
and, when its lowest rung was published apart (`actors.lowest_first`), its other rungs
later, in a second transaction (`publish_rest`).

Invariants:
- Every publish locks the stream row and checks it is live, so an `end` cannot commit
  between the check and the rows; once it is not live, nothing is written and the
  pipeline is told (`on_not_live`), inside that transaction.
- HLS media sequence numbers are dense over the published segments; a segment that
  was dropped (corrupt), withheld (moderation) or lost (its transaction failed) makes
  the next published one a discontinuity.
- The ladder is fixed by the stream's first segment; its rendition rows are written
  with the first published segment.
- What the next segment continues from (sequence, target duration, discontinuities,
  the ladder) is read back from Postgres after an ingest actor restart (`restore`).
- A rung shed under backpressure gets a gap row (`gap`, no object) for every segment
  published in the other rungs, so all rungs' media sequence numbers stay aligned;
  a level change is a `quality_degraded` event in the transaction of the first segment
  at the new level. If that transaction fails, the event is carried to the next
  publish's transaction (`lost`), so a level change is never lost, only late.
- A segment is published per rendition in order, not all or nothing: its first
  transaction writes the moderation decision, the quality row, the lowest rung's row
  (which fixes the segment's sequence number) and the shed rungs' gaps; the rungs
  still being encoded (`pending`) follow in `publish_rest`, at that sequence number,
  in the order the segments were published, each as its segment or, if its job
  failed, as a gap. So each rendition's rows are still written in sequence order, and
  nothing of a segment is written before its moderation verdict (it comes with the
  lowest rung's job); a segment dropped, withheld or lost in its first transaction
  gets no rest (its objects are deleted). Rungs still pending when the ingest restarts
  become gaps when the stream's next pipeline opens, and those still pending when the
  stream ends become gaps in the end's transaction (`media.gap_unpublished_rungs`,
  `actors.stream_store`), so a `publish_rest` after it finds the stream ended and
  writes nothing (a stream ended in SQL, the takedown of sql/0006, gets no gaps).
- No orphaned objects: a segment the worker stored but that no row will name (the
  stream is no longer live, the publish failed, or it was withheld or dropped) has
  its objects deleted once that is decided (`discard`); a withheld segment must not
  stay readable in the bucket. A retried segment rewrites the same keys.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from actors.media_memory import Refusal
from actors.media_worker import ModerationResult, SegmentOutcome, SegmentResult
from actors.segment_rows import (
    Cut,
    Placed,
    Verdict,
    as_gap,
    gap_rows,
    moderation_row,
    quality_row,
    rest_rows,
    tile_columns,
    withheld,
)
from actors.stream_ladder import ladder_for, stream_ladder
from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from lumalive.store import activity, media
from media.hdr import probe_colour, uses_fmp4
from media.ladder import Rendition
from media.object_storage import open_storage
from media.segmenter import SourceSegment
from media.storage import SegmentStorage

__all__ = ["SegmentPublisher", "Cut", "Verdict", "ladder_for"]

log = logging.getLogger(__name__)


class SegmentPublisher:
    """Publishes a stream's segments, one at a time and in order, and keeps what the
    next one continues from."""

    def __init__(
        self,
        stream: dict[str, Any],
        settings: Settings,
        db: Database,
        *,
        on_not_live: Callable[[], None],
        storage: SegmentStorage | None = None,
    ) -> None:
        self.stream_id: UUID = stream["id"]
        self.owner_id: UUID = stream["user_id"]
        self._stream = stream
        self._settings = settings
        self._db = db
        # Called before the transaction that found the stream not live ends, so the
        # pipeline stops before anything else runs.
        self._on_not_live = on_not_live
        # Where the workers stored the segments: to delete those that go unpublished.
        self._storage = storage if storage is not None else open_storage(settings.media_store_url)
        self.renditions: tuple[Rendition, ...] | None = None  # None: no segment yet
        self._ladder_reason: str | None = None
        self._refused: tuple[Refusal, ...] = ()  # rungs over the memory budget
        self._renditions_stored = False
        self._next_sequence = 0
        self._target_duration = 0
        self._discontinuities = 0
        self._discontinuity_next = False
        self.published = 0
        self.dropped = 0
        # Segments whose lowest rung is published and whose other rungs are still to come.
        self._placed: dict[int, Placed] = {}
        # Level changes whose publish failed: written by the next one (`lost`).
        self._unrecorded: list[dict[str, Any]] = []

    def restore(self, resume: media.Resume, renditions: Sequence[dict[str, Any]]) -> None:
        """Continue where an earlier publish of the stream left off."""
        self._next_sequence = resume.next_sequence
        self._target_duration = resume.target_duration
        self._discontinuities = resume.discontinuities
        if renditions:  # the ladder is fixed by the stream's first segment
            self.renditions = tuple(Rendition.from_row(r) for r in renditions)
            self._ladder_reason = renditions[0]["ladder_reason"]
            self._renditions_stored = True

    def ladder(self, segment: SourceSegment) -> tuple[Rendition, ...]:
        """The renditions to encode a segment to: fixed by the stream's first segment."""
        if self.renditions is None:  # as the API's plan says (`actors.stream_ladder`)
            self.renditions, self._ladder_reason, self._refused = stream_ladder(
                self._stream,
                self._settings,
                (segment.width, segment.height),
                segment.fps,
                lambda: probe_colour(segment.data).range,
            )
        return self.renditions

    async def lost(self, cut: Cut, outcome: SegmentOutcome) -> None:
        """A segment's publish failed: nothing of it was committed, so its objects go;
        its level change, if any, is written by the next publish."""
        self._discontinuity_next = True
        if cut.quality_change is not None:
            self._unrecorded.append(cut.quality_change)
        await self.discard(outcome)

    async def discard(self, outcome: SegmentOutcome) -> None:
        """Delete a segment's stored objects that no row names. A failure only logs:
        the objects are unreachable without rows."""
        keys = [e.key for e in outcome.result.renditions]
        if not keys:
            return
        try:
            await asyncio.to_thread(self._storage.delete, keys)
        except Exception:  # noqa: BLE001 - unreachable objects; the stream goes on
            log.exception("deleting unpublished segment objects of %s failed", self.stream_id)

    async def publish(
        self, cut: Cut, outcome: SegmentOutcome, pending: tuple[str, ...] = ()
    ) -> Verdict | None:
        """One segment's rows in one transaction that first checks the stream is live;
        once committed, the state the next segment continues from. `pending`: the
        rungs not in `outcome`, still being encoded (`publish_rest` writes them). None:
        the stream is not live, nothing was written."""
        quality = quality_row(cut, outcome)
        verdict = self._verdict(outcome.result.moderation)
        rows = None
        async with self._db.acting(self.owner_id) as conn:
            live = await media.lock_status(conn, self.stream_id) == StreamStatus.LIVE
            if not live:
                self._on_not_live()
            else:
                rows = await self._write(conn, cut, outcome, quality, verdict)
        if not live:
            await self.discard(outcome)
            return None
        self._unrecorded = []  # committed with this segment
        self._advance(rows)
        if rows is None:  # dropped or withheld: committed without segment rows
            await self.discard(outcome)
        elif pending:
            self._placed[cut.segment.sequence] = Placed(rows[0], pending)
        return verdict

    async def publish_rest(self, cut: Cut, outcome: SegmentOutcome) -> None:
        """The rungs of a segment that `publish` left `pending`: at its sequence number,
        each as encoded or, if the job failed, as a gap. Nothing if the segment itself
        was not published (its objects are deleted) or the stream is no longer live."""
        placed = self._placed.pop(cut.segment.sequence, None)
        if placed is None:
            await self.discard(outcome)
            return
        rows = rest_rows(placed, outcome, str(self.stream_id))
        if outcome.result.error is not None:
            await self.discard(outcome)  # what a failed job (tiles) stored: unnamed
        try:
            live = await self._add_rest(rows)
        except Exception:  # noqa: BLE001 - the lowest rung is out; keep the rungs aligned
            log.exception("publishing the upper rungs of %s failed", self.stream_id)
            await self.discard(outcome)
            live = await self._add_rest([as_gap(r, "publish failed") for r in rows])
        if not live:
            await self.discard(outcome)

    async def _add_rest(self, rows: list[media.NewSegment]) -> bool:
        """Write a segment's later rows if the stream is live; whether it was."""
        async with self._db.acting(self.owner_id) as conn:
            live = await media.lock_status(conn, self.stream_id) == StreamStatus.LIVE
            if not live:
                self._on_not_live()
                return False
            await media.add_segments(conn, self.stream_id, rows)
        return True

    def _verdict(self, moderation: ModerationResult | None) -> Verdict:
        score = moderation.max_score if moderation is not None else None
        flagged = score is not None and score > self._settings.nsfw_threshold
        # A stream its owner declared NSFW is scored and flagged, never ended for it.
        end = flagged and self._settings.nsfw_end_stream and not self._stream.get("is_nsfw")
        return Verdict(moderation, flagged, end)

    async def _write(
        self,
        conn: AsyncConnection,
        cut: Cut,
        outcome: SegmentOutcome,
        quality: media.NewQuality,
        verdict: Verdict,
    ) -> list[media.NewSegment] | None:
        """The segment's rows: moderation, then the segment itself (published, dropped
        or withheld) and its quality, then the moderation action. The published
        segment rows, or None if it was dropped or withheld."""
        sequence, result = cut.segment.sequence, outcome.result
        changes = [*self._unrecorded, *([cut.quality_change] if cut.quality_change else [])]
        for change in changes:  # an earlier failed publish's first (`lost`)
            await activity.add_event(conn, self.stream_id, "quality_degraded", change)
        if verdict.moderation is not None:
            await media.add_moderation(conn, self.stream_id, moderation_row(sequence, verdict))
        rows = None
        if result.error is not None:
            await media.add_quality(conn, self.stream_id, quality)
            await activity.add_event(
                conn,
                self.stream_id,
                "segment_dropped",
                {"source_sequence": sequence, "error": result.error},
            )
        elif verdict.end:
            await media.add_quality(conn, self.stream_id, withheld(quality))
        else:
            if not self._renditions_stored:
                await media.add_renditions(conn, self.stream_id, self._rendition_rows(result))
                for refusal in self._refused:  # with the ladder it changed (media_memory)
                    await activity.add_event(
                        conn, self.stream_id, "quality_degraded", refusal.event(sequence)
                    )
            rows = self._segment_rows(cut, result, outcome)
            rows += gap_rows(cut, rows, str(self.stream_id))
            await media.add_segments(conn, self.stream_id, rows)
            await media.add_quality(conn, self.stream_id, quality)
        if verdict.flagged:
            await activity.add_event(
                conn, self.stream_id, "moderation_action", self._action(sequence, verdict)
            )
        return rows

    def _action(self, sequence: int, verdict: Verdict) -> dict[str, Any]:
        """The `moderation_action` event of a flagged segment."""
        assert verdict.moderation is not None
        return {
            "action": "stream_ended" if verdict.end else "segment_flagged",
            "source_sequence": sequence,
            "score": round(verdict.moderation.max_score or 0.0, 4),
            "threshold": self._settings.nsfw_threshold,
            "model": verdict.moderation.model,
        }

    def _advance(self, rows: list[media.NewSegment] | None) -> None:
        """Committed: advance what the next segment continues from (None: nothing was
        published, so the next published segment is a discontinuity)."""
        if rows is None:
            self.dropped += 1
            self._discontinuity_next = True
            return
        self._renditions_stored = True
        self.published += 1
        last = rows[-1]
        self._next_sequence = last.sequence + 1
        self._target_duration = max(row.target_duration for row in rows)
        self._discontinuities = last.discontinuity_sequence + int(last.discontinuity)
        self._discontinuity_next = False

    def _segment_rows(
        self, cut: Cut, result: SegmentResult, outcome: SegmentOutcome
    ) -> list[media.NewSegment]:
        seg, sequence = cut.segment, self._next_sequence
        # Not on the very first segment: there is nothing before it to be discontinuous with.
        discontinuity = (seg.discontinuity or self._discontinuity_next) and sequence > 0
        pdt = datetime.fromtimestamp(cut.wall_start, UTC)
        # The worker (Ray node:host:pid) that encoded it: where a stream's work ran.
        timings: dict[str, float | str] = {
            **result.timings,
            "retries": outcome.retries,
            "worker": result.worker,
        }
        return [
            media.NewSegment(
                rendition=e.name,
                sequence=sequence,
                source_sequence=seg.sequence,
                duration=e.duration,
                bytes=e.size,
                frames=e.frames,
                path=e.key,
                discontinuity=discontinuity,
                program_date_time=pdt,
                target_duration=max(self._target_duration, math.ceil(e.duration), 1),
                discontinuity_sequence=self._discontinuities,
                timings=timings,
            )
            for e in result.renditions
        ]

    def _rendition_rows(self, result: SegmentResult) -> list[media.NewRendition]:
        """The ladder's rows. A rung not encoded yet (published apart, or shed) has the
        codecs its plan says, with audio only if the encoded rungs have it."""
        assert self.renditions is not None
        codecs = {e.name: e.codecs for e in result.renditions}
        audio = not codecs or any(",mp4a" in c for c in codecs.values())
        return [
            media.NewRendition(
                name=r.name,
                position=i,
                width=r.width,
                height=r.height,
                frame_rate=r.fps,
                video_codec=r.codec,
                video_kbps=r.video_kbps,
                audio_kbps=r.audio_kbps,
                bandwidth=r.bandwidth,
                average_bandwidth=r.average_bandwidth,
                codecs=codecs.get(r.name) or (r.codecs if audio else r.video_codec_string),
                needs_upscale=r.needs_upscale,
                ladder_reason=self._ladder_reason,
                upscale_passes=r.upscale_passes,
                **tile_columns(r),
                video_range=r.video_range,  # sql/0011
                container="fmp4" if uses_fmp4(r) else "ts",
            )
            for i, r in enumerate(self.renditions)
        ]
