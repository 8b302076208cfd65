"""One accepted publish, seen as a live FLV byte stream.

The connection feeds RTMP messages in (event-loop thread only); any number of
readers take FLV out: `async for data in session` on the loop, or
`session.reader()`, a blocking file-like object for PyAV in a worker thread.

Invariants:
- Every reader's bytes form a valid FLV file: header, then the latest
  metadata and decoder configuration, then tags from a keyframe on. A reader
  made in `on_session` (before any media) gets every tag as published; a later
  one starts at the cached current GOP.
- Tag timestamps are the publisher's RTMP timestamps, unchanged.
- A slow reader never slows the ingest or other readers: past its buffer limit
  it is cut off with `SubscriberLaggedError`.
- When the publish ends, each reader drains what it has and then reads EOF.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from media.rtmp import amf0, flv
from media.rtmp.errors import ProtocolError, SubscriberLaggedError

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


class _Subscriber(Protocol):
    def push(self, data: bytes) -> bool:
        """Take bytes; False once this subscriber is gone (closed or cut off)."""

    def finish(self) -> None:
        """No more bytes will come."""


class _Buffer:
    """The bytes a subscriber has not read yet, bounded."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._finished = False
        self._closed = False
        self._error: SubscriberLaggedError | None = None

    def _append(self, data: bytes) -> bool:
        if self._closed or self._error is not None:
            return False
        if self._size + len(data) > self._limit:
            self._error = SubscriberLaggedError(
                f"reader fell more than {self._limit} bytes behind the live stream"
            )
            self._chunks.clear()
            self._size = 0
            return False
        self._chunks.append(data)
        self._size += len(data)
        return True

    def _take(self, size: int) -> bytes:
        """Up to `size` buffered bytes (all of them if size < 0); b"" at the end."""
        if self._error is not None:
            raise self._error
        if size < 0 or size >= self._size:
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            return data
        parts, need = [], size
        while need:
            chunk = self._chunks.popleft()
            if len(chunk) > need:
                self._chunks.appendleft(chunk[need:])
                chunk = chunk[:need]
            parts.append(chunk)
            need -= len(chunk)
        self._size -= size
        return b"".join(parts)


class FlvReader(_Buffer):
    """Blocking, file-like FLV reader for a worker thread:
    `av.open(session.reader(), format="flv")`.

    `read(n)` returns as soon as any bytes are buffered (at most n), so a demuxer
    sees media with no added latency; b"" means the publish ended. It has no
    seek/tell, so PyAV treats it as the live, unseekable stream it is."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self._cond = threading.Condition()

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._chunks and not (self._finished or self._closed or self._error):
                self._cond.wait()
            if self._closed:
                return b""
            return self._take(size)

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop reading: the session drops this reader; a blocked read returns b""."""
        with self._cond:
            self._closed = True
            self._chunks.clear()
            self._size = 0
            self._cond.notify_all()

    def __enter__(self) -> FlvReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def push(self, data: bytes) -> bool:
        with self._cond:
            kept = self._append(data)
            self._cond.notify_all()
            return kept

    def finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()


class _AsyncQueue(_Buffer):
    """The subscriber behind `async for data in session`; event-loop thread only."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self._ready = asyncio.Event()

    async def get(self) -> bytes:
        while not self._chunks and not (self._finished or self._closed or self._error):
            self._ready.clear()
            await self._ready.wait()
        return b"" if self._closed else self._take(-1)

    def close(self) -> None:
        self._closed = True
        self._chunks.clear()

    def push(self, data: bytes) -> bool:
        kept = self._append(data)
        self._ready.set()
        return kept

    def finish(self) -> None:
        self._finished = True
        self._ready.set()


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
        self._gop_cache_bytes = gop_cache_bytes
        self._subscribers: list[_Subscriber] = []
        self._ended = asyncio.Event()
        # What a late reader needs before live tags: a valid FLV start.
        self._file_header: bytes | None = None
        self._script_tag: bytes | None = None
        self._video_config: bytes | None = None
        self._audio_config: bytes | None = None
        self._gop: list[bytes] = []
        self._gop_bytes = 0
        self._gop_open = gop_cache_bytes > 0  # caching until the cache overflows
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
        self._subscribe(reader)
        return reader

    def __aiter__(self) -> AsyncIterator[bytes]:
        """A new reader of this session's FLV, as the bytes arrive; ends with the publish."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        queue = _AsyncQueue(self._reader_buffer_bytes)
        self._subscribe(queue)
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

    def _subscribe(self, subscriber: _Subscriber) -> None:
        start = b"".join(
            part
            for part in (
                self._file_header,
                self._script_tag,
                self._video_config,
                self._audio_config,
            )
            if part
        ) + b"".join(self._gop)
        if start:
            subscriber.push(start)
        if self.closed:
            subscriber.finish()
        else:
            self._subscribers.append(subscriber)

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
            self._script_tag = self._emit(flv.SCRIPT, timestamp, body)
        else:
            self._emit(flv.SCRIPT, timestamp, body)

    def feed_media(self, kind: int, timestamp: int, body: bytes) -> None:
        """An audio (flv.AUDIO) or video (flv.VIDEO) message body."""
        self._media_bytes += len(body)
        self._last_media_at = time.time()
        if self._first_ts is None:
            self._first_ts = timestamp
        self._last_ts = timestamp if self._last_ts is None else max(self._last_ts, timestamp)
        data = self._emit(kind, timestamp, body)
        if kind == flv.VIDEO:
            config = self._on_video(timestamp, body, data)
        else:
            config = self._on_audio(body, data)
        if self._gop_open and not config:
            self._gop.append(data)
            self._gop_bytes += len(data)
            if self._gop_bytes > self._gop_cache_bytes:
                self._gop, self._gop_bytes, self._gop_open = [], 0, False

    def _on_video(self, timestamp: int, body: bytes, tag: bytes) -> bool:
        """Count a video message; True if it is the decoder configuration (kept for
        late readers apart from the GOP)."""
        self._video_messages += 1
        if flv.is_video_sequence_header(body):
            self._video_config = tag
            return True
        if flv.is_video_frame(body):
            self._video_frames += 1
            if self._first_video_ts is None:
                self._first_video_ts = timestamp
            self._last_video_ts = timestamp
            if flv.is_keyframe(body):
                self._keyframes += 1
                # A keyframe starts a new GOP: a late reader starts here.
                self._gop, self._gop_bytes = [], 0
                self._gop_open = self._gop_cache_bytes > 0
        return False

    def _on_audio(self, body: bytes, tag: bytes) -> bool:
        """Count an audio message; True if it is the decoder configuration."""
        self._audio_messages += 1
        if flv.is_audio_sequence_header(body):
            self._audio_config = tag
            return True
        return False

    def end(self, reason: str) -> None:
        """The publish is over: readers get EOF after what they buffered. Idempotent."""
        if self.closed:
            return
        self.end_reason = reason
        self._ended.set()
        for subscriber in self._subscribers:
            subscriber.finish()
        self._subscribers.clear()
        self._gop, self._gop_bytes = [], 0

    def _emit(self, tag_type: int, timestamp: int, body: bytes) -> bytes:
        """Build the tag and send it (after the file header, first time) to every reader."""
        data = flv.tag(tag_type, timestamp, body)
        if self.closed:
            return data
        if self._file_header is None:
            self._file_header = self._make_file_header(tag_type)
            self._broadcast(self._file_header)
        self._broadcast(data)
        return data

    def _make_file_header(self, first_tag_type: int) -> bytes:
        # Metadata (normally the first tag) says which tracks exist; the flags let
        # a demuxer stop probing for a track that will never come.
        has_audio = "audiocodecid" in self.metadata
        has_video = "videocodecid" in self.metadata
        if first_tag_type != flv.SCRIPT or not (has_audio or has_video):
            has_audio = has_video = True
        return flv.file_header(has_audio=has_audio, has_video=has_video)

    def _broadcast(self, data: bytes) -> None:
        alive = [subscriber for subscriber in self._subscribers if subscriber.push(data)]
        if len(alive) != len(self._subscribers):  # closed or cut off: forget them
            self._subscribers = alive
