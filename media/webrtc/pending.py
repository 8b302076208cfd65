"""Decoded frames between a WHIP publish's receive loop and its encoder thread.

Why a bound that drops: a browser sends in real time whatever the server's CPU does;
an encoder that falls behind (a loaded machine) must not build a backlog. A backlog
delays every later frame more and more (latency without bound, memory too), and the
frames' times are read off arrival (`media.webrtc.clock`), so a late frame was also
mistimed: the track's clock jumps 2 s forward each time the lag passes its drift bound,
and the stream gets holes the player stops at. Dropping the oldest waiting frame
instead makes the video's frame rate follow the CPU: a decoded picture references no
other, so any of them may go.

Invariants:
- At most `limit` frames wait; `put` beyond it drops the oldest waiting one and counts
  it (`dropped`). Frames come out in the order they were put.
- `get` returns None once `close` was called and nothing waits: the track ended.
- Event-loop only (no locks): the receive loop puts, the encode loop gets.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["PendingFrames"]

T = TypeVar("T")


class PendingFrames(Generic[T]):
    """A bounded, oldest-dropping queue of frames (see module docstring)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._limit = limit
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0  # frames put and never got

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        if len(self._items) >= self._limit:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._ready.set()

    def close(self) -> None:
        """No more frames: `get` returns what waits, then None."""
        self._closed = True
        self._ready.set()

    async def get(self) -> T | None:
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
