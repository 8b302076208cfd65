"""One stream's media pipeline: a publisher's FLV in, HLS segments published in order.

    FLV reader ──▶ Segmenter (a thread) ──SourceSegment──▶ worker pool (finishes in any
    order) ──▶ published in sequence order (`SegmentPublisher`): rows in Postgres (the
    playlists) + events

No Ray here: the pool is injected as `run(job, data)`, the stream's lifecycle as
`end_stream(reason)`. What one segment writes, and the numbering of the published
segments, live in `actors.segment_publisher`.

Invariants:
- Segments are published in the order they were cut, whatever order the workers
  finish in (a queue of tasks awaited front to back).
- A segment's lowest rung is its own job (`actors.lowest_first`) and is published as
  soon as it is done; its other rungs follow through a second queue, in the same
  order (`SegmentPublisher.publish_rest`). So a slow rung never holds the lowest
  rung's playlist back, and every rendition's segments are still published in order.
- One input at a time. A later input (the publisher reconnected) continues the
  source numbering and the timeline, and its first segment is a discontinuity.
- Once a publish finds the stream not live (the owner ended it, the grace period ran
  out, moderation ended it), the pipeline stops: it writes nothing more and asks for
  its input to be closed (`on_stop`). Its owner ending it does not get here: the
  ingest first finishes the input and awaits `drain` (`IngestService.finish`).
- State that must survive an ingest actor restart is read back from Postgres
  (`lumalive.store.media.resume`); nothing else is kept only in memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from actors.backpressure import Backlog, BackpressureController, shedding_steps
from actors.encode_once import run_segment
from actors.live_encoder import LiveEncoder
from actors.ll_rungs import wants_low_latency
from actors.lowest_first import split_lowest
from actors.media_worker import SegmentJob, SegmentOutcome, SegmentResult
from actors.segment_publisher import Cut, SegmentPublisher, Verdict
from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.store import media
from media.segmenter import TIMELINE_ORIGIN_S, Segmenter, SourceSegment

__all__ = ["StreamPipeline", "RunSegment"]

log = logging.getLogger(__name__)

RunSegment = Callable[[SegmentJob, bytes], Coroutine[Any, Any, SegmentOutcome]]
"""The worker pool: a segment's job and bytes in, its outcome out."""

# The demuxer's probing before the first packet: FLV announces its streams in the
# header and metadata, so a short probe starts the stream sooner.
_FLV_OPTIONS = {"analyzeduration": "1000000", "probesize": "1000000"}


@dataclass(slots=True)
class _InFlight:
    """A segment between cutting and publishing."""

    cut: Cut
    task: asyncio.Task[SegmentOutcome]  # the lowest rung (or the whole segment)
    rest: asyncio.Task[SegmentOutcome] | None = None  # the other rungs, published after
    pending: tuple[str, ...] = ()  # their names


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
        backlog: Callable[[], Backlog] | None = None,
    ) -> None:
        self.stream_id: UUID = stream["id"]
        self.owner_id: UUID = stream["user_id"]
        self._settings = settings
        self._db = db
        self._run = run
        self._executor = executor
        self._end_stream = end_stream
        self._on_stop = on_stop
        # Backpressure: the pool's backlog, read as each segment is cut (None: off).
        self._backlog = backlog if settings.media_backpressure else None
        self._pressure: BackpressureController | None = None  # made with the ladder
        self._ai = stream.get("ai_features") or {}
        self._segments = SegmentPublisher(stream, settings, db, on_not_live=self._stop)
        self._queue: asyncio.Queue[_InFlight | None] = asyncio.Queue()
        # Segments published in their lowest rung, waiting for their other rungs.
        self._rest_queue: asyncio.Queue[_InFlight | None] = asyncio.Queue()
        self._rest_task: asyncio.Task[None] | None = None
        self._input_lock = asyncio.Lock()
        self._publish_task: asyncio.Task[None] | None = None
        # Where the next input continues from.
        self._next_source_sequence = 0
        self._timeline_end: float | None = None  # None: nothing segmented yet
        self.stopped = False
        # Low-latency outputs (WHEP: `actors.whep_egress`) set this to see every packet
        # as the segmenter muxes it, in its thread (`Segmenter(on_packet=...)`).
        self.packet_tap: Callable[[Any], None] | None = None
        # LL-HLS: the stream's streaming encoder (latency mode `low`), tapped the same way.
        self._live = (
            LiveEncoder(stream, settings, db) if wants_low_latency(stream, settings) else None
        )
        self._live_tap: Callable[[Any], None] | None = None

    @property
    def published(self) -> int:
        return self._segments.published

    @property
    def dropped(self) -> int:
        return self._segments.dropped

    async def open(self) -> None:
        """Read back where an earlier publish of this stream left off, start publishing."""
        async with self._db.acting(self.owner_id) as conn:
            # Upper rungs a restart kept from following their lowest: gaps (lowest_first).
            await media.gap_unpublished_rungs(conn, self.stream_id)
            resume = await media.resume(conn, self.stream_id)
            rows = await media.renditions(conn, self.stream_id, tiles=True)
        self._next_source_sequence = resume.next_source_sequence
        self._timeline_end = resume.timeline_end
        if self._live is not None:
            await self._live.open()
        self._segments.restore(resume, rows)
        self._publish_task = asyncio.create_task(
            self._publish_loop(), name=f"publish-{self.stream_id}"
        )
        self._rest_task = asyncio.create_task(self._rest_loop(), name=f"rest-{self.stream_id}")

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
            segmenter = self._segmenter(source, start_time)
            anchor = started_at or time.time()

            def emit(item: tuple[SourceSegment, float] | None) -> None:
                if item is not None and self._live is not None:
                    self._live.cut(item[0].sequence + 1)  # encode once: its next cut point
                loop.call_soon_threadsafe(cuts.put_nowait, item)

            # LL-HLS (`actors.live_encoder`): a streaming encoder session per input.
            self._live_tap = (
                self._live.begin(self._next_source_sequence) if self._live is not None else None
            )
            done = loop.run_in_executor(self._executor, _cut, segmenter, emit)
            try:
                while (item := await cuts.get()) is not None:
                    segment, cut_at = item
                    # Let the segments submitted before reach the pool: its backlog,
                    # read by `_submit` for backpressure, is then current.
                    await asyncio.sleep(0)
                    if not self.stopped:
                        self._submit(
                            Cut(segment, cut_at, anchor + segment.start_pts_seconds - start_time)
                        )
                # Raises InvalidSourceError if the input could not be opened (nothing was cut).
                self._next_source_sequence, end_time = await done
            finally:
                self._live_tap = None
                if self._live is not None:
                    await self._live.end()  # its last part and segment
            if end_time > start_time:
                self._timeline_end = end_time

    async def drain(self) -> None:
        """Wait until the input being read (if any) has ended, its last segment cut,
        and every segment cut so far is published (or dropped). Close or finish the
        input first: a live publisher's input does not end on its own."""
        async with self._input_lock:  # held by `ingest` until its input ends
            pass
        await self._queue.join()
        await self._rest_queue.join()  # filled by the first queue: joined after it

    async def close(self) -> None:
        """Stop: nothing more is published. Waits for the segments still in the pool
        (their results are discarded), so no worker is left running an orphan."""
        self.stopped = True
        if self._live is not None:
            await self._live.close()
        if self._publish_task is not None:
            self._queue.put_nowait(None)
            await asyncio.gather(self._publish_task, return_exceptions=True)
            self._publish_task = None
        if self._rest_task is not None:  # after the first queue: it feeds this one
            self._rest_queue.put_nowait(None)
            await asyncio.gather(self._rest_task, return_exceptions=True)
            self._rest_task = None

    @property
    def live_encoder(self) -> LiveEncoder | None:
        """The stream's LL-HLS streaming encoder, if it has one (WHEP reads its rung)."""
        return self._live

    def status(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "dropped": self.dropped,
            "in_flight": self._queue.qsize(),
            "stopped": self.stopped,
            "ladder": [r.name for r in self._segments.renditions or ()],
            "quality_level": self._pressure.level if self._pressure else 0,
            "llhls": self._live.status() if self._live is not None else None,
        }

    # --- cutting --------------------------------------------------------------------

    def _segmenter(self, source: Any, start_time: float) -> Callable[[], Segmenter]:
        """Opens the next input's segmenter: it continues the source numbering and the
        timeline where the last input stopped."""
        return functools.partial(
            Segmenter,
            source,
            format="flv",
            target_duration=self._settings.segment_seconds,
            first_sequence=self._next_source_sequence,
            start_time=start_time,
            # A later input is a new encoder session: new timestamps, maybe new parameters.
            discontinuity=self._timeline_end is not None,
            options=_FLV_OPTIONS,
            on_packet=self._tap,
        )

    def _tap(self, packet: Any) -> None:
        tap = self.packet_tap  # set or cleared at any time by the event loop
        if tap is not None:
            tap(packet)
        live = self._live_tap
        if live is not None:
            live(packet)

    def _degrade(self, cut: Cut) -> Cut:
        """Backpressure (`actors.backpressure`): the pool's backlog as the segment is cut
        decides the rungs it sheds and, if the level changed, the event it records."""
        if self._backlog is None:
            return cut
        if self._pressure is None:
            steps = shedding_steps(self._segments.ladder(cut.segment))
            self._pressure = BackpressureController(steps, self._settings.segment_seconds)
        pressure = self._pressure
        change = pressure.observe(time.time(), self._backlog())
        event = None
        if change is not None:
            event = change.event(cut.segment.sequence, pressure.max_level)
            log.warning("stream %s: quality %s: %s", self.stream_id, change.action, event)
        return dataclasses.replace(
            cut, level=pressure.level, shed=pressure.shed, quality_change=event
        )

    def _submit(self, cut: Cut) -> None:
        cut = self._degrade(cut)
        segment = cut.segment
        job = SegmentJob(
            stream_id=str(self.stream_id),
            source_sequence=segment.sequence,
            renditions=tuple(r for r in self._segments.ladder(segment) if r.name not in cut.shed),
            frames=segment.frames,
            moderation_fps=self._settings.moderation_fps,
            enhance=bool(self._ai.get("enhancement")),
            denoise=bool(self._ai.get("denoise")),
            sharpen=bool(self._ai.get("sharpen")),
            submitted_at=cut.cut_at,
        )
        # The lowest rung apart (`actors.lowest_first`); a 20K stream's tiles go to the
        # pool as jobs of their own (`actors.tile_jobs`); the rungs the streaming
        # encoder carries are not encoded again (`actors.encode_once`).
        first, rest = split_lowest(job, self._settings.segment_seconds)
        task = asyncio.create_task(run_segment(self._run, first, segment, self._live))
        if rest is None:
            self._queue.put_nowait(_InFlight(cut, task))
            return
        later = asyncio.create_task(run_segment(self._run, rest, segment, self._live))
        pending = tuple(r.name for r in rest.renditions)
        self._queue.put_nowait(_InFlight(cut, task, later, pending))

    # --- publishing -----------------------------------------------------------------

    async def _publish_loop(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if item is None:
                    return
                outcome = await self._outcome(item.cut, item.task)
                if not self.stopped:
                    await self._publish(item.cut, outcome, item.pending)
                else:
                    await self._segments.discard(outcome)
                if item.rest is not None:
                    self._rest_queue.put_nowait(item)
            finally:
                self._queue.task_done()

    async def _rest_loop(self) -> None:
        """A segment's other rungs, once its lowest is published: in the same order."""
        while True:
            item = await self._rest_queue.get()
            try:
                if item is None:
                    return
                assert item.rest is not None
                outcome = await self._outcome(item.cut, item.rest)
                if not self.stopped:
                    await self._publish_rest(item.cut, outcome)
                else:
                    await self._segments.discard(outcome)
            finally:
                self._rest_queue.task_done()

    async def _outcome(self, cut: Cut, task: asyncio.Task[SegmentOutcome]) -> SegmentOutcome:
        """The worker's outcome; a segment the pool gave up on is published as dropped."""
        try:
            return await task
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - workers kept dying, or a bug
            sequence = cut.segment.sequence
            log.exception("segment %s of %s failed", sequence, self.stream_id)
            return SegmentOutcome(SegmentResult(sequence, error=f"{type(e).__name__}: {e}"), 0)

    async def _publish(
        self, cut: Cut, outcome: SegmentOutcome, pending: tuple[str, ...] = ()
    ) -> None:
        """Publish one segment (its `pending` rungs follow); a withheld one ends the
        stream. A failure loses only this segment: the stream goes on."""
        try:
            verdict = await self._segments.publish(cut, outcome, pending)
            if verdict is not None and verdict.end:
                await self._end_for_policy(cut.segment, verdict)
        except Exception:  # noqa: BLE001 - the stream goes on
            log.exception(
                "publishing segment %s of %s failed", cut.segment.sequence, self.stream_id
            )
            await self._segments.lost(cut, outcome)

    async def _publish_rest(self, cut: Cut, outcome: SegmentOutcome) -> None:
        """Publish a segment's other rungs. A failure loses only them: the stream goes on."""
        try:
            await self._segments.publish_rest(cut, outcome)
        except Exception:  # noqa: BLE001 - the stream goes on
            log.exception(
                "publishing the rest of %s of %s failed", cut.segment.sequence, self.stream_id
            )

    async def _end_for_policy(self, segment: SourceSegment, verdict: Verdict) -> None:
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
