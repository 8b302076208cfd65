"""One accepted publish, seen as a live FLV byte stream.

The connection feeds RTMP messages in (event-loop thread only); any number of
readers take FLV out: `async for data in session` on the loop, or
`session.reader()`, a blocking file-like object for PyAV in a worker thread.
The readers are in `media.rtmp.flv_reader`, the sending to them (and the GOP
cache for late readers) in `media.rtmp.fanout`.

Invariants:
- Every reader's bytes form a valid FLV file: header, then the latest
  metadata and decoder configuration, then tags from a keyframe on. A reader
  made in `on_session` (before any media) gets every tag as published; a later
  one starts at the cached current GOP.
- Tag timestamps are the publisher's RTMP timestamps, unchanged.
- A slow reader never slows the ingest or other readers: past its buffer limit
  it is cut off with `SubscriberLaggedError`.
- When the publish ends, each reader drains what it has and then reads EOF.
- `stats` counts every message fed in, whether or not anyone reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from media.rtmp import amf0, flv
from media.rtmp.errors import ProtocolError
from media.rtmp.fanout import FlvFanout
from media.rtmp.flv_reader import AsyncFlvQueue, FlvReader

__all__ = ["FlvReader", "IngestSession", "SessionStats"]


@dataclass(frozen=True, slots=True)
class SessionStats:
    """Counters since the publish was accepted; diff two snapshots for current rates."""

    bytes_in: int  # bytes read from the publisher's socket, RTMP framing included
    media_bytes: int  # audio + video message bodies
    video_messages: int  # every video message, decoder configuration included
    audio_messages: int
    video_frames: int  # coded pictures only
    keyframes: int
    first_timestamp_ms: int | None  # publisher's media timestamps (audio or video)
    last_timestamp_ms: int | None  # the highest seen
    first_video_timestamp_ms: int | None
    last_video_timestamp_ms: int | None
    started_at: float  # time.time() when the publish was accepted
    last_media_at: float | None  # time.time() of the latest audio/video message

    @property
    def duration_ms(self) -> int:
        if self.first_timestamp_ms is None or self.last_timestamp_ms is None:
            return 0
        return self.last_timestamp_ms - self.first_timestamp_ms

    @property
    def bitrate_bps(self) -> float | None:
        """Average media bitrate over the stream's own timeline."""
        return self.media_bytes * 8000 / self.duration_ms if self.duration_ms > 0 else None

    @property
    def video_fps(self) -> float | None:
        """Average frame rate from the video timestamps (frames - 1 intervals)."""
        if self.first_video_timestamp_ms is None or self.last_video_timestamp_ms is None:
            return None
        span = self.last_video_timestamp_ms - self.first_video_timestamp_ms
        return (self.video_frames - 1) * 1000 / span if span > 0 else None


class IngestSession:
    """An accepted publish: who it is, its stats, and its media as FLV."""

    def __init__(
        self,
        *,
        stream_id: str,
        stream_key: str,
        app: str,
        peer: str,
        reader_buffer_bytes: int = 64 << 20,
        gop_cache_bytes: int = 16 << 20,
    ) -> None:
        self.stream_id = stream_id
        self.stream_key = stream_key
        self.app = app
        self.peer = peer
        self.metadata: dict[str, Any] = {}  # the publisher's onMetaData, if it sent one
        self.end_reason: str | None = None  # unpublished, disconnected, idle_timeout, …
        self._reader_buffer_bytes = reader_buffer_bytes
        self._fanout = FlvFanout(gop_cache_bytes)
        self._ended = asyncio.Event()
        # Counters behind `stats`.
        self._started_at = time.time()
        self._bytes_in = 0
        self._media_bytes = 0
        self._video_messages = self._audio_messages = 0
        self._video_frames = self._keyframes = 0
        self._first_ts: int | None = None
        self._last_ts: int | None = None
        self._first_video_ts: int | None = None
        self._last_video_ts: int | None = None
        self._last_media_at: float | None = None

    def __repr__(self) -> str:
        return (
            f"IngestSession(stream_id={self.stream_id!r}, app={self.app!r}, "
            f"peer={self.peer!r}, end_reason={self.end_reason!r})"
        )

    # -- readers' side ------------------------------------------------------

    def reader(self) -> FlvReader:
        """A new blocking reader of this session's FLV (see `FlvReader`)."""
        reader = FlvReader(self._reader_buffer_bytes)
        self._fanout.subscribe(reader)
        return reader

    def __aiter__(self) -> AsyncIterator[bytes]:
        """A new reader of this session's FLV, as the bytes arrive; ends with the publish."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        queue = AsyncFlvQueue(self._reader_buffer_bytes)
        self._fanout.subscribe(queue)
        try:
            while data := await queue.get():
                yield data
        finally:
            queue.close()

    @property
    def closed(self) -> bool:
        return self._ended.is_set()

    async def wait_closed(self) -> None:
        await self._ended.wait()

    @property
    def stats(self) -> SessionStats:
        return SessionStats(
            bytes_in=self._bytes_in,
            media_bytes=self._media_bytes,
            video_messages=self._video_messages,
            audio_messages=self._audio_messages,
            video_frames=self._video_frames,
            keyframes=self._keyframes,
            first_timestamp_ms=self._first_ts,
            last_timestamp_ms=self._last_ts,
            first_video_timestamp_ms=self._first_video_ts,
            last_video_timestamp_ms=self._last_video_ts,
            started_at=self._started_at,
            last_media_at=self._last_media_at,
        )

    # -- the connection's side (event-loop thread) --------------------------

    def count_bytes_in(self, n: int) -> None:
        self._bytes_in += n

    def feed_script(self, timestamp: int, body: bytes) -> None:
        """An AMF0 data message (without @setDataFrame): onMetaData and the like."""
        try:
            values = amf0.decode_all(body)
        except ProtocolError:
            values = []
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            self.metadata = values[1]
            self._fanout.send_script(timestamp, body, self.metadata)
        else:
            self._fanout.send_script(timestamp, body, None)

    def feed_media(self, kind: int, timestamp: int, body: bytes) -> None:
        """An audio (flv.AUDIO) or video (flv.VIDEO) message body."""
        self._media_bytes += len(body)
        self._last_media_at = time.time()
        if self._first_ts is None:
            self._first_ts = timestamp
        self._last_ts = timestamp if self._last_ts is None else max(self._last_ts, timestamp)
        self._fanout.send_media(kind, timestamp, body)
        if kind == flv.VIDEO:
            self._count_video(timestamp, body)
        else:
            self._audio_messages += 1

    def _count_video(self, timestamp: int, body: bytes) -> None:
        self._video_messages += 1
        if flv.is_video_sequence_header(body) or not flv.is_video_frame(body):
            return
        self._video_frames += 1
        if self._first_video_ts is None:
            self._first_video_ts = timestamp
        self._last_video_ts = timestamp
        if flv.is_keyframe(body):
            self._keyframes += 1

    def end(self, reason: str) -> None:
        """The publish is over: readers get EOF after what they buffered. Idempotent."""
        if self.closed:
            return
        self.end_reason = reason
        self._ended.set()
        self._fanout.finish()
