"""The readers of a session's FLV: bounded buffers that the session pushes bytes into.

`FlvReader` is blocking and file-like, for PyAV in a worker thread; `AsyncFlvQueue`
is what `async for data in session` reads on the event loop.

Invariants:
- A slow reader never slows the ingest or other readers: `push` never blocks, and
  past its buffer limit a reader is cut off (its buffer dropped, `push` returns
  False) and its next read raises `SubscriberLaggedError`.
- After `finish`, a reader takes no more bytes (`push` returns False), drains what it
  has buffered and then reads EOF (b""); after `close`, it reads EOF at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Protocol

from media.rtmp.errors import SubscriberLaggedError

__all__ = ["AsyncFlvQueue", "FlvReader", "Subscriber"]


class Subscriber(Protocol):
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
        # Finished: its reader reads up to here, e.g. the ingest ending a stream while
        # its publisher is still sending.
        if self._closed or self._finished or self._error is not None:
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


class AsyncFlvQueue(_Buffer):
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
