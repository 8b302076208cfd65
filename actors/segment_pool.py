"""Scheduling segments onto a bounded set of workers, one segment at a time each.

Plain asyncio: how a worker is made, called and killed is a `WorkerFactory`
(`actors.media_pool.RayWorkers` in the ingest: Ray actors), so the scheduling is
testable in process.

Invariants:
- At most `size` workers; each runs one segment at a time, so a segment waits in the
  pool, not behind another one inside a worker, and a worker that dies loses exactly
  the segment it was running.
- Free workers go to the oldest waiting segment (by `SegmentJob.submitted_at`, plus
  its `defer_s`: a segment's upper rungs wait for the next lowest rungs).
- A worker that dies mid-segment (`WorkerDied`) costs a retry, not a gap: the segment
  is resubmitted (up to `max_attempts` times in all) with its original age, so ahead
  of newer ones, and the dead worker is replaced on demand.
- Workers are created on first use and retired after `idle_s` without work, so an
  idle ingest holds nothing that other jobs could use.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from typing import Any, Generic, Protocol, TypeVar

from actors.backpressure import Backlog
from actors.media_worker import SegmentJob, SegmentOutcome, SegmentResult

__all__ = ["SegmentPool", "WorkerDied", "WorkerFactory"]

log = logging.getLogger(__name__)

W = TypeVar("W")


class WorkerDied(Exception):
    """The worker is gone, and with it the segment it was running (not the segment's fault)."""


class WorkerFactory(Protocol[W]):
    """How the pool makes, calls and kills a worker."""

    def spawn(self) -> W:
        """A new worker; it may still be starting when it gets its first segment."""
        ...

    def share(self, data: bytes) -> Any:
        """A segment's bytes as `process` takes them; made once for all its attempts."""
        ...

    async def process(self, worker: W, job: SegmentJob, data: Any) -> SegmentResult:
        """Run one segment on `worker`. Raises `WorkerDied` if the worker died doing it;
        anything else it raises is the segment's (a bug) and is not retried."""
        ...

    def kill(self, worker: W) -> None:
        """Stop a worker for good (it may be dead already)."""
        ...


class SegmentPool(Generic[W]):
    """Hands segments to idle workers, oldest segment first. Event-loop thread only."""

    def __init__(
        self, workers: WorkerFactory[W], *, size: int, idle_s: float, max_attempts: int = 3
    ) -> None:
        self.size = size
        self._factory = workers
        self._max_attempts = max_attempts
        self._idle_s = idle_s
        self._idle: list[W] = []
        self._busy: list[W] = []
        self._workers = 0  # created and not discarded
        self._waiters: list[tuple[float, int, asyncio.Future[W]]] = []
        self._order = itertools.count()
        self._retire: asyncio.TimerHandle | None = None
        self.completed = 0
        self.retried = 0

    async def run(self, job: SegmentJob, data: bytes) -> SegmentOutcome:
        """The worker's result for one segment. Raises what the worker raised (a bug),
        or `WorkerDied` once `max_attempts` workers died running it."""
        shared = self._factory.share(data)  # once: a retry reuses it
        attempt = 0
        while True:
            attempt += 1
            worker = await self._acquire(job.submitted_at + job.defer_s)
            try:
                result = await self._factory.process(worker, job, shared)
            except WorkerDied:
                self._died(worker, job, attempt)
                if attempt >= self._max_attempts:
                    raise
                continue
            except BaseException:
                self._release(worker)
                raise
            self._release(worker)
            self.completed += 1
            return SegmentOutcome(result, attempt - 1)

    def status(self) -> dict[str, Any]:
        """For operators and tests: the workers, which are busy, and the queue."""
        return {
            "size": self.size,
            "workers": self._workers,
            "idle": list(self._idle),
            "busy": list(self._busy),
            "waiting": len(self._waiters),
            "completed": self.completed,
            "retried": self.retried,
        }

    def backlog(self) -> Backlog:
        """The segments waiting for a worker (not running yet), for backpressure."""
        waiting = [priority for priority, _, fut in self._waiters if not fut.done()]
        full = not self._idle and self._workers >= self.size  # the next job would wait
        return Backlog(len(waiting), min(waiting, default=None), full)

    def shutdown(self) -> None:
        for worker in self._idle + self._busy:
            self._factory.kill(worker)
        self._idle, self._busy, self._workers = [], [], 0
        for _, _, fut in self._waiters:
            fut.cancel()
        self._waiters = []

    # --- workers --------------------------------------------------------------------

    async def _acquire(self, priority: float) -> W:
        if self._retire is not None:
            self._retire.cancel()
            self._retire = None
        if self._idle:
            worker = self._idle.pop()
        elif self._workers < self.size:
            worker = self._create()
        else:
            return await self._wait_for_worker(priority)
        self._busy.append(worker)
        return worker

    async def _wait_for_worker(self, priority: float) -> W:
        """Queue for the next free worker; `_hand_over` marks it busy."""
        fut: asyncio.Future[W] = asyncio.get_running_loop().create_future()
        entry = (priority, next(self._order), fut)
        heapq.heappush(self._waiters, entry)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed over as we were cancelled
                self._release(fut.result())
            elif entry in self._waiters:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def _create(self) -> W:
        self._workers += 1
        return self._factory.spawn()

    def _release(self, worker: W) -> None:
        if worker in self._busy:
            self._busy.remove(worker)
        if not self._hand_over(worker):
            self._idle.append(worker)
            self._maybe_retire()

    def _died(self, worker: W, job: SegmentJob, attempt: int) -> None:
        self._discard(worker)
        self.retried += 1
        log.warning(
            "media worker died on segment %s of %s (attempt %d)",
            job.source_sequence,
            job.stream_id,
            attempt,
        )

    def _discard(self, worker: W) -> None:
        """A dead worker: forget it; a waiting segment gets a fresh one."""
        if worker in self._busy:
            self._busy.remove(worker)
        self._workers -= 1
        with contextlib.suppress(Exception):  # it is dead already
            self._factory.kill(worker)
        while self._waiters and self._workers < self.size:
            fresh = self._create()
            if not self._hand_over(fresh):
                self._idle.append(fresh)
                break

    def _hand_over(self, worker: W) -> bool:
        """Give a free worker to the oldest waiting segment, if any."""
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                self._busy.append(worker)
                fut.set_result(worker)
                return True
        return False

    def _maybe_retire(self) -> None:
        if self._busy or self._waiters or self._retire is not None:
            return
        self._retire = asyncio.get_running_loop().call_later(self._idle_s, self._retire_idle)

    def _retire_idle(self) -> None:
        self._retire = None
        if self._busy or self._waiters:
            return
        for worker in self._idle:
            self._factory.kill(worker)
        self._workers -= len(self._idle)
        self._idle = []
        log.info("media pool idle for %.0f s: workers retired", self._idle_s)
