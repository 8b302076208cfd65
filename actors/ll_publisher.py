"""One stream's LL-HLS publishing: the streaming encoder's parts (`actors.live_encoder`)
stored as objects, then recorded in Postgres, and the segments they complete with them.

    parts (event loop) ──▶ objects to storage ──▶ rows (one transaction per part time,
    every rung's part in it) ──NOTIFY lumalive_llhls──▶ API replicas

Invariants:
- Rows follow objects: a part's row is written after its object is stored, a
  segment's row (its parts' bytes, one object) after it; a playlist never names a
  missing object.
- Every write first locks the stream row and checks it is live (as the pool's
  segments, sql/0003); once not live, nothing more is written (`stopped`).
- Sequence numbers continue across inputs and ingest restarts (`store.llhls.resume`);
  each input is an encoder session (`epoch`) with its own init segment, and its first
  segment after an earlier one is a discontinuity.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime
from uuid import UUID

from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from lumalive.store import llhls, media
from media.llhls.live import LiveTranscoder
from media.llhls.parts import EncodedPart, init_name, part_name, segment_name
from media.object_storage import open_storage
from media.storage import SegmentStorage

__all__ = ["LlPublisher"]

log = logging.getLogger(__name__)


class _OpenSegment:
    """A rendition's segment being filled: its parts' bytes so far."""

    def __init__(self, sequence: int, epoch: int, pdt: datetime, discontinuity: bool) -> None:
        self.sequence, self.epoch, self.pdt = sequence, epoch, pdt
        self.discontinuity = discontinuity
        self.data = bytearray()
        self.duration = 0.0


class LlPublisher:
    """See the module docstring. `open()` once, `begin()` per input, then `run()` on
    that input's parts until None."""

    def __init__(
        self,
        stream_id: UUID,
        owner_id: UUID,
        settings: Settings,
        db: Database,
        storage: SegmentStorage | None = None,
    ) -> None:
        self.stream_id, self.owner_id = stream_id, owner_id
        self._settings = settings
        self._db = db
        self._storage = storage  # opened on the first put (an input may never have one)
        self._discontinuities = 0
        self._renditions_stored = False
        self._open: dict[str, _OpenSegment] = {}
        self._base = 0  # sequence of the input's first segment
        self._next = 0  # sequence after the last one published
        self._published_any = False  # a later input's first segment is a discontinuity
        self._input_discontinuity = False
        self.stopped = False
        self.published_parts = 0

    async def open(self) -> int:
        """Read back where the stream's LL-HLS left off; the next input's encoder epoch."""
        async with self._db.acting(self.owner_id) as conn:
            resume = await llhls.resume(conn, self.stream_id)
            self._renditions_stored = bool(await llhls.renditions(conn, self.stream_id))
        self._discontinuities = resume.discontinuities
        self._next = resume.next_sequence
        self._published_any = resume.any_segment
        return resume.next_epoch

    def begin(self) -> None:
        """A new input: its segments continue the numbering, its first one a
        discontinuity if an earlier input published any."""
        self._base = self._next
        self._input_discontinuity = self._published_any

    async def run(
        self, out: asyncio.Queue[list[EncodedPart] | None], transcoder: LiveTranscoder
    ) -> None:
        """Publish the input's parts as they come, until None; then its last segments.
        A failed batch is logged and lost: the stream goes on."""
        first = True
        while (parts := await out.get()) is not None:
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

    def put_all(self, puts: dict[str, bytes]) -> None:
        """Store objects by key (blocking: call it in a thread)."""
        if self._storage is None:
            self._storage = open_storage(self._settings.media_store_url)
        for key, data in puts.items():
            self._storage.put(key, data)

    async def _store_inits(self, transcoder: LiveTranscoder) -> None:
        """The input's init segments; the renditions' rows, the first time ever."""
        enc = transcoder.encoder
        assert enc is not None
        puts = {self._key(name, init_name(enc.epoch)): data for name, data in enc.inits.items()}
        await asyncio.to_thread(self.put_all, puts)
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
        await asyncio.to_thread(self.put_all, puts)
        async with self._db.acting(self.owner_id) as conn:
            if await media.lock_status(conn, self.stream_id) != StreamStatus.LIVE:
                self.stopped = True
                return
            if segments:
                await llhls.add_segments(conn, self.stream_id, segments)
            if parts:
                await llhls.add_parts(conn, self.stream_id, parts)
        self.published_parts += len(parts)

    def _key(self, rendition: str, name: str) -> str:
        return f"{self.stream_id}/ll/{rendition}/{name}"
