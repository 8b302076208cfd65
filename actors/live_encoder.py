"""One live stream's LL-HLS: the streaming encoder on the segmenter's packets, its parts
and segments stored and recorded as they are made.

    Segmenter thread ──tap (SourcePacket copies)──▶ queue ──▶ encoder thread
    (`media.llhls.LiveTranscoder`: decode once, x264 zerolatency per LL rung, fMP4
    parts) ──▶ event loop: objects to storage, then rows in Postgres (one transaction
    per part time, every rung's part in it) ──NOTIFY lumalive_llhls──▶ API replicas

Why a thread in the ingest actor, not an actor of its own: the packets are already in
this process (the tap runs in the segmenter's thread), so nothing is serialised per
frame; x264 and swscale run in C without the GIL. The encoder is one per stream and
live for as long as its publisher, like the segmenter beside it. What it costs is CPU
on the ingest's node: about one core for 720p+480p+360p at `veryfast` (docs/media.md).
A cluster that wants it elsewhere can host this class in an actor per stream: it needs
only the packets, storage and the database.

Invariants:
- Rows follow objects: a part's row is written after its object is stored, a
  segment's row (its parts' bytes, one object) after it; a playlist never names a
  missing object.
- Every write first locks the stream row and checks it is live (as the pool's
  segments, sql/0003); once not live, nothing more is written.
- Sequence numbers continue across inputs and ingest restarts (`store.llhls.resume`);
  each input is an encoder session (`epoch`) with its own init segment, and its first
  segment after an earlier one is a discontinuity.
- The tap never blocks the segmenter: past `_QUEUE_PACKETS` waiting packets it drops
  video and audio until the next video keyframe (the encoder fell behind real time),
  and counts it.
- Encode once (`llhls_encode_once`, `actors.encode_once`): the segmenter's cut points
  reach the encoder as marks on the packets (`cut`, called in the segmenter's thread
  before the next segment's first packet is tapped); the classic TS segments made at
  them wait here (`classic`) for the pipeline, which takes them instead of encoding
  those rungs on the pool. A classic segment that will never come (the encoder failed
  or the input ended) is answered None at once, so the pipeline falls back to the pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from av.packet import Packet
from av.stream import Stream

from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from lumalive.store import llhls, media
from media.ladder import Rendition, plan
from media.llhls.classic import ClassicSegment
from media.llhls.live import LiveTranscoder, SourcePacket
from media.llhls.parts import EncodedPart, init_name, part_name, segment_name
from media.object_storage import open_storage
from media.segmenter import SourceSegment
from media.storage import SegmentStorage

__all__ = ["LiveEncoder", "ll_renditions", "wants_low_latency"]

log = logging.getLogger(__name__)

_QUEUE_PACKETS = 1000  # about 10 s of 60 fps video and 48 kHz AAC
_CLASSIC_KEPT = 8  # classic segments made but not (yet) asked for, per stream

Classic = dict[str, ClassicSegment]  # one source segment's classic TS, by rendition
# (the input's renditions, their init segments by name, the parts just made)
PartTap = Callable[[Sequence[Rendition], Mapping[str, bytes], list[EncodedPart]], None]


def wants_low_latency(stream: dict[str, Any], settings: Settings) -> bool:
    return stream.get("latency_mode", "low") == "low" and settings.llhls_max_height > 0


def ll_renditions(
    stream: dict[str, Any], settings: Settings, width: int, height: int, fps: float
) -> tuple[Rendition, ...]:
    """The rungs of the stream's ladder the streaming encoder carries: H.264, not
    upscaled, not tiles, up to `llhls_max_height` (short side) and `media_max_height`."""
    ai = stream.get("ai_features") or {}
    ladder, _ = plan(
        width,
        height,
        stream["quality"],
        bool(ai.get("enhancement")),
        fps=fps,
        bitrate_kbps=stream.get("bitrate"),
        max_height=settings.media_max_height,
    )
    cap = settings.llhls_max_height
    return tuple(
        r
        for r in ladder
        if min(r.width, r.height) <= cap
        and r.codec == "h264"
        and not r.needs_upscale
        and r.tile is None
    )


class _OpenSegment:
    """A rendition's segment being filled: its parts' bytes so far."""

    def __init__(self, sequence: int, epoch: int, pdt: datetime, discontinuity: bool) -> None:
        self.sequence, self.epoch, self.pdt = sequence, epoch, pdt
        self.discontinuity = discontinuity
        self.data = bytearray()
        self.duration = 0.0


class LiveEncoder:
    """See the module docstring. `begin()` per input (returns the tap), `end()` when the
    input ended (flushes the last part and segment), `close()` when the stream's
    pipeline closes."""

    def __init__(
        self,
        stream: dict[str, Any],
        settings: Settings,
        db: Database,
        *,
        storage: SegmentStorage | None = None,
    ) -> None:
        self.stream_id: UUID = stream["id"]
        self.owner_id: UUID = stream["user_id"]
        self._stream = stream
        self._settings = settings
        self._db = db
        self._storage = storage  # opened on the first part (an input may never have one)
        self._resume = llhls.LlResume()
        self._discontinuities = 0
        self._renditions_stored = False
        self._thread: threading.Thread | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._out: asyncio.Queue[list[EncodedPart] | None] = asyncio.Queue()
        self._transcoder: LiveTranscoder | None = None
        self._packets: queue.Queue[SourcePacket | None] | None = None
        self._open: dict[str, _OpenSegment] = {}
        self._epoch = 0
        self._base = 0  # sequence of the input's first segment
        self._next = 0  # sequence after the last one published
        self._published_any = False  # a later input's first segment is a discontinuity
        self._input_discontinuity = False
        self.stopped = False
        self.published_parts = 0
        self.dropped_packets = 0
        # Encode once: classic segments made (by source sequence) and asked for.
        self.encode_once = settings.llhls_encode_once
        self._tap: _Tap | None = None
        self._classic_made: dict[int, Classic] = {}
        self._classic_asked: dict[int, asyncio.Future[Classic | None]] = {}
        self._classic_last = -1  # the highest source sequence made (or given up)
        self.failed = False  # this input's encoder stopped ("LL-HLS encoder failed")
        self._classic_running = False  # until the encoder thread's last word
        # WHEP (`media.webrtc.rung.RungVideo`): each batch of parts, in the encoder's thread.
        self.part_tap: PartTap | None = None

    async def open(self) -> None:
        async with self._db.acting(self.owner_id) as conn:
            self._resume = await llhls.resume(conn, self.stream_id)
            self._renditions_stored = bool(await llhls.renditions(conn, self.stream_id))
        self._discontinuities = self._resume.discontinuities
        self._epoch = self._resume.next_epoch
        self._next = self._resume.next_sequence
        self._published_any = self._resume.any_segment

    def begin(self, first_sequence: int = 0) -> Callable[[Packet[Stream]], None]:
        """A new input: a new encoder session; returns the segmenter's tap for it.
        `first_sequence`: the source sequence of the input's first segment."""
        loop = asyncio.get_running_loop()
        s = self._settings
        transcoder = LiveTranscoder(
            lambda w, h, fps: ll_renditions(self._stream, s, w, h, fps),
            segment_s=s.segment_seconds,
            part_s=s.llhls_part_s,
            epoch=self._epoch,
            tune=s.llhls_tune,
            preset=s.x264_preset,
            classic=self.encode_once,
        )
        self.failed = False
        self._classic_running = True
        self._transcoder = transcoder
        self._base = self._next
        self._input_discontinuity = self._published_any
        packets: queue.Queue[SourcePacket | None] = queue.Queue(_QUEUE_PACKETS)
        self._packets = packets

        def emit(parts: list[EncodedPart] | None) -> None:
            part_tap, enc = self.part_tap, transcoder.encoder
            if parts and part_tap is not None and enc is not None:  # WHEP (never raises)
                part_tap(transcoder.renditions, enc.inits, parts)
            loop.call_soon_threadsafe(self._out.put_nowait, parts)

        def emit_classic(segments: list[ClassicSegment] | None, failed: bool = False) -> None:
            loop.call_soon_threadsafe(self._classic_done, segments, failed)

        self._thread = threading.Thread(
            target=_encode,
            args=(transcoder, packets, emit, emit_classic),
            name=f"llhls-{self.stream_id}",
        )
        self._thread.start()
        self._publisher = asyncio.create_task(self._publish_loop(transcoder))
        self._tap = _Tap(packets, self, first_sequence if self.encode_once else None)
        return self._tap

    def cut(self, next_sequence: int) -> None:
        """The segmenter cut: its next video packet starts segment `next_sequence`.
        Called in the segmenter's thread, between the cut and that packet's tap."""
        tap = self._tap
        if tap is not None and self.encode_once:
            tap.mark = next_sequence

    @property
    def segment_seconds(self) -> float:
        return self._settings.segment_seconds

    def carried(self, renditions: Sequence[Rendition], segment: SourceSegment) -> set[str]:
        """Which of a segment's pool renditions this encoder makes classic TS of: its
        LL rungs (same name and size), unless the pool would make them differently
        (denoise and sharpen touch every rung, HDR maps colour)."""
        ai = self._stream.get("ai_features") or {}
        if not self.carries_classic or ai.get("denoise") or ai.get("sharpen") or ai.get("hdr"):
            return set()
        ll = ll_renditions(
            self._stream, self._settings, segment.width, segment.height, segment.fps or 30.0
        )
        sizes = {(r.name, r.width, r.height) for r in ll}
        return {r.name for r in renditions if (r.name, r.width, r.height) in sizes}

    async def store_classic(self, puts: dict[str, bytes]) -> list[str]:
        """Store classic segments at the pool's keys; the keys, in order."""
        await asyncio.to_thread(self._put_all, puts)
        return list(puts)

    @property
    def carries_classic(self) -> bool:
        """Whether classic segments of this input's LL rungs are (still) being made."""
        return self.encode_once and self._classic_running and not self.failed

    async def classic(self, sequence: int, timeout: float) -> Classic | None:
        """Source segment `sequence`'s classic TS of every LL rung, once made; None if
        it never will be (or not within `timeout` seconds: the encoder fell behind)."""
        if (made := self._classic_made.get(sequence)) is not None:
            return made  # a segment's jobs (`actors.lowest_first`) each ask for it
        if not self.carries_classic or sequence <= self._classic_last:
            return None
        future = self._classic_asked.get(sequence) or asyncio.get_running_loop().create_future()
        self._classic_asked[sequence] = future
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return None

    def _classic_done(self, segments: list[ClassicSegment] | None, failed: bool) -> None:
        """From the encoder thread: classic segments made, or None: no more will be
        (`failed`: the encoder failed; the pool takes its rungs back)."""
        if segments is None:
            self._classic_running = False
            if failed:
                self.failed = True
                log.warning("stream %s: the pool takes the LL rungs back", self.stream_id)
            self._classic_last = max([self._classic_last, *self._classic_asked])
            self._answer(list(self._classic_asked), None)
            return
        made: dict[int, Classic] = {}
        for seg in segments:
            made.setdefault(seg.source_sequence, {})[seg.rendition] = seg
        for sequence, by_rung in sorted(made.items()):
            self._classic_last = max(self._classic_last, sequence)
            self._classic_made[sequence] = by_rung
            self._answer([sequence], by_rung)
        skipped = [s for s in self._classic_asked if s < self._classic_last]  # never made
        self._answer(skipped, None)
        for sequence in sorted(self._classic_made)[:-_CLASSIC_KEPT]:
            del self._classic_made[sequence]

    def _answer(self, sequences: list[int], answer: Classic | None) -> None:
        for sequence in sequences:
            future = self._classic_asked.pop(sequence, None)
            if future is not None and not future.done():
                future.set_result(answer)

    async def end(self) -> None:
        """The input ended: flush its encoder and publish what it made."""
        thread, task, packets = self._thread, self._publisher, self._packets
        if thread is None or task is None or packets is None:
            return
        self._thread = self._publisher = self._packets = self._tap = None
        await asyncio.to_thread(packets.put, None)  # waits for room: the end is never dropped
        await asyncio.to_thread(thread.join)
        await task
        self._epoch += 1

    async def close(self) -> None:
        self.stopped = True
        await self.end()

    def status(self) -> dict[str, Any]:
        t = self._transcoder
        return {
            "renditions": [r.name for r in t.renditions] if t else [],
            "published_parts": self.published_parts,
            "dropped_packets": self.dropped_packets,
            "decode_errors": t.decode_errors if t else 0,
            "encode_once": self.carries_classic,
            "failed": self.failed,
        }

    # --- publishing -----------------------------------------------------------------

    async def _publish_loop(self, transcoder: LiveTranscoder) -> None:
        first = True
        while (parts := await self._out.get()) is not None:
            if self.stopped or not parts:
                continue
            try:
                if first:
                    await self._store_inits(transcoder)
                    first = False
                await self._publish(transcoder, parts)
            except Exception:  # noqa: BLE001 - a lost part: the stream goes on
                log.exception("stream %s: publishing LL-HLS parts failed", self.stream_id)
        if not self.stopped:
            try:
                await self._finish_segments()
            except Exception:  # noqa: BLE001
                log.exception("stream %s: the last LL-HLS segment failed", self.stream_id)
        self._open.clear()

    async def _store_inits(self, transcoder: LiveTranscoder) -> None:
        enc = transcoder.encoder
        assert enc is not None
        puts = {self._key(name, init_name(enc.epoch)): data for name, data in enc.inits.items()}
        await asyncio.to_thread(self._put_all, puts)
        if self._renditions_stored:
            return
        codecs = enc.codecs
        target = math.ceil(2 * self._settings.segment_seconds)  # the longest segment
        rows = [
            llhls.NewLlRendition(
                name=r.name,
                position=i,
                width=r.width,
                height=r.height,
                frame_rate=r.fps,
                bandwidth=r.bandwidth,
                average_bandwidth=r.average_bandwidth,
                codecs=codecs.get(r.name) or r.video_codec_string,
                part_target=enc.plan.part_target,
                target_duration=target,
            )
            for i, r in enumerate(transcoder.renditions)
        ]
        async with self._db.acting(self.owner_id) as conn:
            await llhls.add_renditions(conn, self.stream_id, rows)
        self._renditions_stored = True

    async def _publish(self, transcoder: LiveTranscoder, parts: list[EncodedPart]) -> None:
        """Store the parts (and the segments they complete), then record them."""
        puts: dict[str, bytes] = {}
        part_rows: list[llhls.NewPart] = []
        segment_rows: list[llhls.NewLlSegment] = []
        for p in parts:
            pdt = datetime.fromtimestamp(transcoder.wall(p.start), UTC)
            sequence = self._base + p.segment
            if p.independent:
                done = self._open.pop(p.rendition, None)
                if done is not None:
                    segment_rows.append(self._segment_row(p.rendition, done, puts))
                first = p.segment == 0 and self._input_discontinuity
                self._open[p.rendition] = _OpenSegment(sequence, p.epoch, pdt, first)
                self._published_any = True
                self._next = max(self._next, sequence + 1)
            seg = self._open.get(p.rendition)
            if seg is None:
                continue  # no IDR seen for it yet: cannot happen, the encoder starts with one
            seg.data += p.data
            seg.duration += p.duration
            key = self._key(p.rendition, part_name(sequence, p.index))
            puts[key] = p.data
            part_rows.append(
                llhls.NewPart(
                    p.rendition,
                    sequence,
                    p.index,
                    p.epoch,
                    p.duration,
                    p.independent,
                    len(p.data),
                    key,
                    pdt,
                )
            )
        await self._write(puts, part_rows, segment_rows)

    async def _finish_segments(self) -> None:
        puts: dict[str, bytes] = {}
        rows = [self._segment_row(name, seg, puts) for name, seg in self._open.items()]
        if rows:
            await self._write(puts, [], rows)

    def _segment_row(
        self, rendition: str, seg: _OpenSegment, puts: dict[str, bytes]
    ) -> llhls.NewLlSegment:
        key = self._key(rendition, segment_name(seg.sequence))
        puts[key] = bytes(seg.data)
        row = llhls.NewLlSegment(
            rendition=rendition,
            sequence=seg.sequence,
            epoch=seg.epoch,
            duration=seg.duration,
            bytes=len(seg.data),
            path=key,
            init_path=self._key(rendition, init_name(seg.epoch)),
            discontinuity=seg.discontinuity,
            discontinuity_sequence=self._discontinuities,
            program_date_time=seg.pdt,
        )
        self._discontinuities += seg.discontinuity
        return row

    async def _write(
        self,
        puts: dict[str, bytes],
        parts: list[llhls.NewPart],
        segments: list[llhls.NewLlSegment],
    ) -> None:
        await asyncio.to_thread(self._put_all, puts)
        async with self._db.acting(self.owner_id) as conn:
            if await media.lock_status(conn, self.stream_id) != StreamStatus.LIVE:
                self.stopped = True
                return
            if segments:
                await llhls.add_segments(conn, self.stream_id, segments)
            if parts:
                await llhls.add_parts(conn, self.stream_id, parts)
        self.published_parts += len(parts)

    def _put_all(self, puts: dict[str, bytes]) -> None:
        if self._storage is None:
            self._storage = open_storage(self._settings.media_store_url)
        for key, data in puts.items():
            self._storage.put(key, data)

    def _key(self, rendition: str, name: str) -> str:
        return f"{self.stream_id}/ll/{rendition}/{name}"


class _Tap:
    """The segmenter's `on_packet`: copies video packets into the encoder's queue,
    never blocking (see the module docstring)."""

    def __init__(
        self, packets: queue.Queue[SourcePacket | None], owner: LiveEncoder, mark: int | None
    ) -> None:
        self._packets = packets
        self._owner = owner
        self._dropping = False
        # Encode once: the source sequence the next video packet starts (`LiveEncoder.cut`).
        self.mark = mark

    def __call__(self, packet: Packet[Stream]) -> None:
        try:
            p = SourcePacket.of(packet)
            if p is None:
                return
            if self.mark is not None and not p.audio:
                p, self.mark = dataclasses.replace(p, classic=self.mark), None
            if self._dropping and (p.audio or not p.keyframe):
                self._owner.dropped_packets += 1
                return
            self._packets.put_nowait(p)
            self._dropping = False
        except queue.Full:
            self._dropping = True
            self._owner.dropped_packets += 1
        except Exception:  # noqa: BLE001 - never into the segmenter
            log.exception("LL-HLS tap failed")


def _encode(
    transcoder: LiveTranscoder,
    packets: queue.Queue[SourcePacket | None],
    emit: Callable[[list[EncodedPart] | None], None],
    emit_classic: Callable[[list[ClassicSegment] | None, bool], None],
) -> None:
    """The encoder thread: packets in until None, parts (and classic segments) out,
    then None."""
    failed = True
    try:
        while (p := packets.get()) is not None:
            parts = transcoder.push(p)
            if parts:
                emit(parts)
            if classic := transcoder.take_classic():
                emit_classic(classic, False)
        emit(transcoder.close())
        emit_classic(transcoder.take_classic(), False)
        failed = False
    except Exception:  # noqa: BLE001 - the LL renditions stop; HLS goes on
        log.exception("LL-HLS encoder failed")
        transcoder.abort()
        emit_classic(None, True)  # at once: the pool takes the rungs back
        _drain(packets)
    finally:
        if not failed:
            emit_classic(None, False)
        emit(None)


def _drain(packets: queue.Queue[SourcePacket | None]) -> None:
    """After a failure: take packets until the end, so `end()` never waits on a
    full queue."""
    while packets.get() is not None:
        pass
