"""One live stream's streaming encoder (LL-HLS): the segmenter's packets tapped, decoded
once and encoded per LL rung in a thread of its own, its parts handed to the event loop.

    Segmenter thread ──tap (SourcePacket copies)──▶ queue ──▶ encoder thread
    (`media.llhls.LiveTranscoder`: decode once, x264 zerolatency per LL rung, fMP4
    parts) ──▶ event loop: `actors.ll_publisher` (objects, then rows)
                          `actors.classic_handoff` (encode once: classic TS segments)

Why a thread in the ingest actor, not an actor of its own: the packets are already in
this process (the tap runs in the segmenter's thread), so nothing is serialised per
frame; x264 and swscale run in C without the GIL. The encoder is one per stream and
live for as long as its publisher, like the segmenter beside it. What it costs is CPU
on the ingest's node: about one core for 720p+480p+360p at `veryfast` (docs/media.md).
A cluster that wants it elsewhere can host this class in an actor per stream: it needs
only the packets, storage and the database.

Invariants:
- Each input is an encoder session (`begin` ... `end`) with its own epoch; the next
  one starts only after the last one's parts are all published.
- The tap never blocks the segmenter: past `_QUEUE_PACKETS` waiting packets it drops
  video and audio until the next video keyframe (the encoder fell behind real time),
  and counts it.
- Encode once (`llhls_encode_once`): the segmenter's cut points reach the encoder as
  marks on the packets (`cut`, called in the segmenter's thread before the next
  segment's first packet is tapped); what it makes at them goes to `handoff`.
- An encoder that fails stops this input's LL rungs (`failed`): the classic HLS and
  the pool go on, and take the LL rungs back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

from av.packet import Packet
from av.stream import Stream

from actors.classic_handoff import ClassicHandoff
from actors.ll_publisher import LlPublisher
from actors.ll_rungs import ll_renditions
from lumalive.db import Database
from lumalive.settings import Settings
from media.ladder import Rendition
from media.llhls.classic import ClassicSegment
from media.llhls.live import LiveTranscoder, SourcePacket
from media.llhls.parts import EncodedPart
from media.storage import SegmentStorage

__all__ = ["LiveEncoder"]

log = logging.getLogger(__name__)

_QUEUE_PACKETS = 1000  # about 10 s of 60 fps video and 48 kHz AAC

# (the input's renditions, their init segments by name, the parts just made)
PartTap = Callable[[Sequence[Rendition], Mapping[str, bytes], list[EncodedPart]], None]


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
        self._publisher = LlPublisher(self.stream_id, self.owner_id, settings, db, storage)
        # Encode once: the classic segments made, until the pipeline takes them.
        self.handoff = ClassicHandoff(stream, settings, self._publisher.put_all)
        self._thread: threading.Thread | None = None
        self._publishing: asyncio.Task[None] | None = None
        self._out: asyncio.Queue[list[EncodedPart] | None] = asyncio.Queue()
        self._transcoder: LiveTranscoder | None = None
        self._packets: queue.Queue[SourcePacket | None] | None = None
        self._tap: _Tap | None = None
        self._epoch = 0
        self.dropped_packets = 0
        self.failed = False  # this input's encoder stopped ("LL-HLS encoder failed")
        # WHEP (`media.webrtc.rung.RungVideo`): each batch of parts, in the encoder's thread.
        self.part_tap: PartTap | None = None

    async def open(self) -> None:
        """Continue where the stream's LL-HLS left off (an ingest restart): epoch, numbers."""
        self._epoch = await self._publisher.open()

    def begin(self, first_sequence: int = 0) -> Callable[[Packet[Stream]], None]:
        """A new input: a new encoder session; returns the segmenter's tap for it.
        `first_sequence`: the source sequence of the input's first segment."""
        s = self._settings
        transcoder = LiveTranscoder(
            lambda w, h, fps: ll_renditions(self._stream, s, w, h, fps),
            segment_s=s.segment_seconds,
            part_s=s.llhls_part_s,
            epoch=self._epoch,
            tune=s.llhls_tune,
            preset=s.x264_preset,
            classic=self.handoff.enabled,
        )
        self.failed = False
        self.handoff.start()
        self._transcoder = transcoder
        self._publisher.begin()
        packets: queue.Queue[SourcePacket | None] = queue.Queue(_QUEUE_PACKETS)
        self._packets = packets
        self._thread = self._start_thread(transcoder, packets)
        self._publishing = asyncio.create_task(self._publisher.run(self._out, transcoder))
        self._tap = _Tap(packets, self, first_sequence if self.handoff.enabled else None)
        return self._tap

    def cut(self, next_sequence: int) -> None:
        """The segmenter cut: its next video packet starts segment `next_sequence`.
        Called in the segmenter's thread, between the cut and that packet's tap."""
        tap = self._tap
        if tap is not None and self.handoff.enabled:
            tap.mark = next_sequence

    async def end(self) -> None:
        """The input ended: flush its encoder and publish what it made."""
        thread, task, packets = self._thread, self._publishing, self._packets
        if thread is None or task is None or packets is None:
            return
        self._thread = self._publishing = self._packets = self._tap = None
        await asyncio.to_thread(packets.put, None)  # waits for room: the end is never dropped
        await asyncio.to_thread(thread.join)
        await task
        self._epoch += 1

    async def close(self) -> None:
        """The pipeline closes: nothing more is published; the input's thread ends."""
        self._publisher.stopped = True
        await self.end()

    def status(self) -> dict[str, Any]:
        t = self._transcoder
        return {
            "renditions": [r.name for r in t.renditions] if t else [],
            "published_parts": self._publisher.published_parts,
            "dropped_packets": self.dropped_packets,
            "decode_errors": t.decode_errors if t else 0,
            "encode_once": self.handoff.carries,
            "failed": self.failed,
        }

    def _start_thread(
        self, transcoder: LiveTranscoder, packets: queue.Queue[SourcePacket | None]
    ) -> threading.Thread:
        """The input's encoder thread; what it makes comes back to this event loop."""
        loop = asyncio.get_running_loop()

        def emit(parts: list[EncodedPart] | None) -> None:
            part_tap, enc = self.part_tap, transcoder.encoder
            if parts and part_tap is not None and enc is not None:  # WHEP (never raises)
                part_tap(transcoder.renditions, enc.inits, parts)
            loop.call_soon_threadsafe(self._out.put_nowait, parts)

        def emit_classic(segments: list[ClassicSegment] | None, failed: bool = False) -> None:
            loop.call_soon_threadsafe(self._classic_done, segments, failed)

        thread = threading.Thread(
            target=_encode,
            args=(transcoder, packets, emit, emit_classic),
            name=f"llhls-{self.stream_id}",
        )
        thread.start()
        return thread

    def _classic_done(self, segments: list[ClassicSegment] | None, failed: bool) -> None:
        """From the encoder thread: classic segments made, or None: no more will be
        (`failed`: the encoder failed; the pool takes its rungs back)."""
        if segments is not None:
            self.handoff.made(segments)
            return
        if failed:
            self.failed = True
            log.warning("stream %s: the pool takes the LL rungs back", self.stream_id)
        self.handoff.ended()


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
