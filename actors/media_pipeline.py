"""One stream's media pipeline: a publisher's FLV in, HLS segments published in order.

    FLV reader ──▶ Segmenter (a thread) ──SourceSegment──▶ worker pool (finishes in any
    order) ──▶ published in sequence order: rows in Postgres (the playlists) + events

No Ray here: the pool is injected as `run(job, data)`, the stream's lifecycle as
`end_stream(reason)`.

Invariants:
- Segments are published in the order they were cut, whatever order the workers
  finish in (a queue of tasks awaited front to back).
- One input at a time. A later input (the publisher reconnected) continues the
  source numbering and the timeline, and its first segment is a discontinuity.
- Every publish locks the stream row and checks it is live; once it is not (the owner
  ended it, the grace period ran out, moderation ended it), the pipeline stops: it
  writes nothing more and asks for its input to be closed (`on_stop`).
- HLS media sequence numbers are dense over the published segments; a segment that
  was dropped (corrupt) makes the next published one a discontinuity.
- State that must survive an ingest actor restart is read back from Postgres
  (`lumalive.store.media.resume`); nothing else is kept only in memory.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from actors.media_worker import ModerationResult, SegmentJob, SegmentOutcome, SegmentResult
from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from lumalive.store import activity, media
from media.ladder import Rendition, build_ladder
from media.segmenter import TIMELINE_ORIGIN_S, Segmenter, SourceSegment

__all__ = ["StreamPipeline", "RunSegment", "ladder_for"]

log = logging.getLogger(__name__)

RunSegment = Callable[[SegmentJob, bytes], Coroutine[Any, Any, SegmentOutcome]]
"""The worker pool: a segment's job and bytes in, its outcome out."""

# The demuxer's probing before the first packet: FLV announces its streams in the
# header and metadata, so a short probe starts the stream sooner.
_FLV_OPTIONS = {"analyzeduration": "1000000", "probesize": "1000000"}


@dataclass(slots=True)
class _Cut:
    """A segment between cutting and publishing."""

    segment: SourceSegment
    cut_at: float  # time.time(): the segment's last byte is in
    wall_start: float  # time.time() of its first frame, for EXT-X-PROGRAM-DATE-TIME
    task: asyncio.Task[SegmentOutcome]


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What moderation decided for one segment."""

    moderation: ModerationResult | None  # None: not moderated
    flagged: bool  # scored over `nsfw_threshold`
    end: bool  # ... and so withheld, and the stream ended for it (`nsfw_end_stream`)


def ladder_for(
    stream: dict[str, Any], settings: Settings, width: int, height: int, fps: float
) -> tuple[tuple[Rendition, ...], str | None]:
    """The stream's renditions for a source size: its quality tier on top, rungs above
    the source only with AI enhancement, none above `media_max_height`."""
    ai = stream.get("ai_features") or {}
    renditions, reason = build_ladder(
        width, height, stream["quality"], bool(ai.get("enhancement")), fps=fps or 30.0
    )
    cap = settings.media_max_height
    if cap:
        kept = [r for r in renditions if min(r.width, r.height) <= cap] or [renditions[-1]]
        if len(kept) < len(renditions):
            reason = "; ".join(filter(None, [reason, f"capped at {cap}p (media_max_height)"]))
        renditions = tuple(kept)
    return renditions, reason


class StreamPipeline:
    def __init__(
        self,
        stream: dict[str, Any],
        settings: Settings,
        db: Database,
        run: RunSegment,
        *,
        executor: Executor,
        end_stream: Callable[[str], Awaitable[None]],
        on_stop: Callable[[], None] = lambda: None,
    ) -> None:
        self.stream_id: UUID = stream["id"]
        self.owner_id: UUID = stream["user_id"]
        self._stream = stream
        self._settings = settings
        self._db = db
        self._run = run
        self._executor = executor
        self._end_stream = end_stream
        self._on_stop = on_stop
        self._ai = stream.get("ai_features") or {}
        self._queue: asyncio.Queue[_Cut | None] = asyncio.Queue()
        self._input_lock = asyncio.Lock()
        self._publisher: asyncio.Task[None] | None = None
        # Where the next input and the next published segment continue from.
        self._next_source_sequence = 0
        self._timeline_end: float | None = None  # None: nothing segmented yet
        self._next_sequence = 0
        self._target_duration = 0
        self._discontinuities = 0
        self._ladder: tuple[Rendition, ...] | None = None
        self._ladder_reason: str | None = None
        self._renditions_stored = False
        self._discontinuity_next = False
        self.stopped = False
        self.published = 0
        self.dropped = 0

    async def open(self) -> None:
        """Read back where an earlier publish of this stream left off, start publishing."""
        async with self._db.acting(self.owner_id) as conn:
            resume = await media.resume(conn, self.stream_id)
            rows = await media.renditions(conn, self.stream_id)
        self._next_source_sequence = resume.next_source_sequence
        self._timeline_end = resume.timeline_end
        self._next_sequence = resume.next_sequence
        self._target_duration = resume.target_duration
        self._discontinuities = resume.discontinuities
        if rows:  # the ladder is fixed by the stream's first segment
            self._ladder = tuple(Rendition.from_row(r) for r in rows)
            self._ladder_reason = rows[0]["ladder_reason"]
            self._renditions_stored = True
        self._publisher = asyncio.create_task(
            self._publish_loop(), name=f"publish-{self.stream_id}"
        )

    async def ingest(self, source: Any, *, started_at: float | None = None) -> None:
        """Run one input (a blocking FLV reader) until it ends. Its segments are handed
        to the pool as they are cut; returns before they are all published (`drain`).
        Raises `InvalidSourceError` if the input is not usable H.264/HEVC."""
        async with self._input_lock:
            if self.stopped:
                return
            loop = asyncio.get_running_loop()
            cuts: asyncio.Queue[tuple[SourceSegment, float] | None] = asyncio.Queue()
            start_time = TIMELINE_ORIGIN_S if self._timeline_end is None else self._timeline_end
            segmenter = functools.partial(
                Segmenter,
                source,
                format="flv",
                target_duration=self._settings.segment_seconds,
                first_sequence=self._next_source_sequence,
                start_time=start_time,
                # A later input is a new encoder session: new timestamps, maybe new parameters.
                discontinuity=self._timeline_end is not None,
                options=_FLV_OPTIONS,
            )
            anchor = started_at or time.time()

            def emit(item: tuple[SourceSegment, float] | None) -> None:
                loop.call_soon_threadsafe(cuts.put_nowait, item)

            done = loop.run_in_executor(self._executor, _cut, segmenter, emit)
            while (item := await cuts.get()) is not None:
                segment, cut_at = item
                if not self.stopped:
                    self._submit(segment, cut_at, anchor + segment.start_pts_seconds - start_time)
            # Raises InvalidSourceError if the input could not be opened (nothing was cut).
            self._next_source_sequence, end_time = await done
            if end_time > start_time:
                self._timeline_end = end_time

    async def drain(self) -> None:
        """Wait until every segment cut so far is published (or dropped)."""
        await self._queue.join()

    async def close(self) -> None:
        """Stop: nothing more is published. Waits for the segments still in the pool
        (their results are discarded), so no worker is left running an orphan."""
        self.stopped = True
        if self._publisher is not None:
            self._queue.put_nowait(None)
            await asyncio.gather(self._publisher, return_exceptions=True)
            self._publisher = None

    def status(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "dropped": self.dropped,
            "in_flight": self._queue.qsize(),
            "stopped": self.stopped,
            "ladder": [r.name for r in self._ladder or ()],
        }

    # --- cutting --------------------------------------------------------------------

    def _submit(self, segment: SourceSegment, cut_at: float, wall_start: float) -> None:
        if self._ladder is None:
            self._ladder, self._ladder_reason = ladder_for(
                self._stream, self._settings, segment.width, segment.height, segment.fps
            )
        job = SegmentJob(
            stream_id=str(self.stream_id),
            source_sequence=segment.sequence,
            renditions=self._ladder,
            frames=segment.frames,
            moderation_fps=self._settings.moderation_fps,
            enhance=bool(self._ai.get("enhancement")),
            denoise=bool(self._ai.get("denoise")),
            sharpen=bool(self._ai.get("sharpen")),
            submitted_at=cut_at,
        )
        task = asyncio.create_task(self._run(job, segment.data))
        self._queue.put_nowait(_Cut(segment, cut_at, wall_start, task))

    # --- publishing -----------------------------------------------------------------

    async def _publish_loop(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if item is None:
                    return
                try:
                    outcome = await item.task
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - workers kept dying, or a bug
                    log.exception("segment %s of %s failed", item.segment.sequence, self.stream_id)
                    outcome = SegmentOutcome(
                        SegmentResult(item.segment.sequence, error=f"{type(e).__name__}: {e}"), 0
                    )
                if not self.stopped:
                    try:
                        await self._publish(item, outcome)
                    except Exception:  # noqa: BLE001 - the stream goes on
                        log.exception(
                            "publishing segment %s of %s failed",
                            item.segment.sequence,
                            self.stream_id,
                        )
                        self._discontinuity_next = True
            finally:
                self._queue.task_done()

    async def _publish(self, cut: _Cut, outcome: SegmentOutcome) -> None:
        """One segment's rows in one transaction that first checks the stream is live;
        once committed, the state the next segment continues from."""
        quality = _quality(cut, outcome)
        verdict = self._verdict(outcome.result.moderation)
        async with self._db.acting(self.owner_id) as conn:
            if await media.lock_status(conn, self.stream_id) != StreamStatus.LIVE:
                self._stop()
                return
            rows = await self._write(conn, cut, outcome, quality, verdict)
        self._advance(rows)
        if verdict.end:
            await self._end_for_policy(cut.segment, verdict)

    def _verdict(self, moderation: ModerationResult | None) -> _Verdict:
        score = moderation.max_score if moderation is not None else None
        flagged = score is not None and score > self._settings.nsfw_threshold
        # A stream its owner declared NSFW is scored and flagged, never ended for it.
        end = flagged and self._settings.nsfw_end_stream and not self._stream.get("is_nsfw")
        return _Verdict(moderation, flagged, end)

    async def _write(
        self,
        conn: AsyncConnection,
        cut: _Cut,
        outcome: SegmentOutcome,
        quality: media.NewQuality,
        verdict: _Verdict,
    ) -> list[media.NewSegment] | None:
        """The segment's rows: moderation, then the segment itself (published, dropped
        or withheld) and its quality, then the moderation action. The published
        segment rows, or None if it was dropped or withheld."""
        sequence, result = cut.segment.sequence, outcome.result
        if verdict.moderation is not None:
            await media.add_moderation(conn, self.stream_id, _moderation_row(sequence, verdict))
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
            await media.add_quality(conn, self.stream_id, _withheld(quality))
        else:
            if not self._renditions_stored:
                await media.add_renditions(conn, self.stream_id, self._rendition_rows(result))
            rows = self._segment_rows(cut, result, outcome)
            await media.add_segments(conn, self.stream_id, rows)
            await media.add_quality(conn, self.stream_id, quality)
        if verdict.flagged:
            await activity.add_event(
                conn, self.stream_id, "moderation_action", self._action(sequence, verdict)
            )
        return rows

    def _action(self, sequence: int, verdict: _Verdict) -> dict[str, Any]:
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

    async def _end_for_policy(self, segment: SourceSegment, verdict: _Verdict) -> None:
        """A withheld segment ends the stream: publish nothing more, then end it."""
        mod = verdict.moderation
        log.warning(
            "stream %s: segment %s scored %.3f > %.2f; ending the stream",
            self.stream_id,
            segment.sequence,
            mod.max_score if mod else 0.0,
            self._settings.nsfw_threshold,
        )
        self._stop()
        await self._end_stream("policy_violation")

    def _segment_rows(
        self, cut: _Cut, result: SegmentResult, outcome: SegmentOutcome
    ) -> list[media.NewSegment]:
        seg, sequence = cut.segment, self._next_sequence
        # Not on the very first segment: there is nothing before it to be discontinuous with.
        discontinuity = (seg.discontinuity or self._discontinuity_next) and sequence > 0
        pdt = datetime.fromtimestamp(cut.wall_start, UTC)
        timings = {**result.timings, "retries": outcome.retries}
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
        assert self._ladder is not None
        codecs = {e.name: e.codecs for e in result.renditions}
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
                codecs=codecs.get(r.name) or r.codecs,
                needs_upscale=r.needs_upscale,
                ladder_reason=self._ladder_reason,
            )
            for i, r in enumerate(self._ladder)
        ]

    def _stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._on_stop()


def _cut(
    open_segmenter: Callable[[], Segmenter],
    emit: Callable[[tuple[SourceSegment, float] | None], object],
) -> tuple[int, float]:
    """In a thread: cut one input, emitting (segment, when it was cut) for each and
    then None; returns the source sequence and timeline position the next input
    continues from."""
    try:
        segmenter = open_segmenter()  # blocks until the input's header is read
        for segment in segmenter:
            emit((segment, time.time()))
        return segmenter.next_sequence, segmenter.end_time
    finally:
        emit(None)


def _quality(cut: _Cut, outcome: SegmentOutcome) -> media.NewQuality:
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
    )


def _moderation_row(sequence: int, verdict: _Verdict) -> media.NewModeration:
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


def _withheld(q: media.NewQuality) -> media.NewQuality:
    return media.NewQuality(
        q.source_sequence,
        q.start_time,
        q.duration,
        q.frames,
        q.input_fps,
        q.input_kbps,
        q.latency_ms,
        q.retries,
        True,
        "withheld: moderation score over the threshold",
    )
