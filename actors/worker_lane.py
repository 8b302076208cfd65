"""Two `process` calls on one media worker at once (the pool's lowest-rung lane,
`actors.segment_pool`): how each call learns another ran beside it, and how an
upper-rung call gives the CPUs to a lowest-rung one. Plain threading, no Ray, no PyAV:
`actors.media_worker.SegmentWorker` holds one of each.

Invariants:
- Only upper-rung calls wait, and only while a lowest-rung call encodes; lowest-rung
  calls never wait, so no two calls wait on each other.
- A call that waited knows for how long (`spent`), for its `timings`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["InFlight", "LaneYield"]


class InFlight:
    """The `process` calls running now, so each can tell whether another ran beside it
    (its process CPU time then covers both)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: list[list[bool]] = []

    @contextmanager
    def call(self) -> Iterator[list[bool]]:
        """A flag, set once another call overlaps this one."""
        beside = [False]
        with self._lock:
            for other in self._running:
                other[0] = beside[0] = True
            self._running.append(beside)
        try:
            yield beside
        finally:
            with self._lock:
                self._running = [r for r in self._running if r is not beside]


class LaneYield:
    """While a lowest-rung call runs, an upper-rung call beside it (the pool's lane)
    waits between frames, so the lowest rung, the one the live playlist waits for, has
    the worker's CPUs instead of half of them. The pool never preempts a job; this is
    the worker's own frame-by-frame yield, and it moves work, it adds none: the upper
    job resumes where it was once the lowest rung's moderation and encode are done
    (its encoder's threads finish the frames they hold meanwhile). Off: both run at
    once on the worker's CPUs (`media_lane_yield`)."""

    def __init__(self, on: bool) -> None:
        self._on = on
        self._cond = threading.Condition()
        self._lowest = 0  # lowest-rung calls encoding now

    @contextmanager
    def first(self, part: str) -> Iterator[None]:
        """Around a call's moderation and encode: a lowest-rung one makes upper-rung
        calls wait until it is done."""
        if part != "lowest":
            yield
            return
        with self._cond:
            self._lowest += 1
        try:
            yield
        finally:
            with self._cond:
                self._lowest -= 1
                self._cond.notify_all()

    def yielder(self, part: str, spent: list[float]) -> Callable[[], None] | None:
        """What an upper-rung call runs between frames (None for other calls, or off):
        wait while a lowest-rung call encodes, adding the seconds waited to `spent[0]`."""
        if part != "upper" or not self._on:
            return None

        def wait() -> None:
            if not self._lowest:  # one that starts after this read is yielded to next frame
                return
            t = time.perf_counter()
            with self._cond:
                self._cond.wait_for(lambda: not self._lowest)
            spent[0] += time.perf_counter() - t

        return wait
