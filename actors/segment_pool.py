"""Scheduling segments onto a bounded set of workers, one segment at a time each.

Plain asyncio: how a worker is made, called and killed is a `WorkerFactory`
(`actors.media_pool.RayWorkers` in the ingest: Ray actors), so the scheduling is
testable in process.

Invariants:
- At most `size` workers; each runs one job at a time, so a job waits in the pool,
  not behind another one inside a worker, and a worker that dies loses exactly the
  job it was running.
- A free worker goes to the oldest waiting job that may take it (by
  `SegmentJob.submitted_at`, plus its `defer_s`: a segment's upper rungs wait for the
  next lowest rungs); jobs are never preempted.
- The reserve (`reserve=True`, with `size >= 2`): jobs of a segment's upper rungs
  (`SegmentJob.part == "upper"`, `actors.lowest_first`) hold at most `size - 1`
  workers at once; lowest-rung and whole jobs take any worker. So one worker is always
  idle, unmade or running a lowest rung: a lowest rung never waits because upper rungs
  hold every worker, only behind older lowest rungs and the first job to finish. An
  upper-rung job skipped for that keeps its place: it takes the next worker an upper
  rung frees, ahead of newer upper rungs. The cost: upper rungs get `size - 1` workers'
  throughput, not `size`. With one worker the reserve cannot apply (`lowest_first`).
- A worker that dies mid-segment (`WorkerDied`) costs a retry, not a gap: the job is
  resubmitted (up to `max_attempts` times in all) with its original age and part, so
  ahead of newer ones, and the dead worker is replaced on demand.
- Workers are created on first use and retired after `idle_s` without work, so an
  idle ingest holds nothing that other jobs could use.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass
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
        self,
        workers: WorkerFactory[W],
        *,
        size: int,
        idle_s: float,
        max_attempts: int = 3,
        reserve: bool = True,
    ) -> None:
        self.size = size
        self._factory = workers
        self._max_attempts = max_attempts
        self._idle_s = idle_s
        self._reserve = reserve
        self._idle: list[W] = []
        self._busy: list[W] = []
        self._upper = 0  # busy workers running upper-rung jobs
        self._workers = 0  # created and not discarded
        self._waiters: list[_Waiter[W]] = []
        self._order = itertools.count()
        self._retire: asyncio.TimerHandle | None = None
        self.completed = 0
        self.retried = 0

    async def run(self, job: SegmentJob, data: bytes) -> SegmentOutcome:
        """The worker's result for one segment. Raises what the worker raised (a bug),
        or `WorkerDied` once `max_attempts` workers died running it."""
        shared = self._factory.share(data)  # once: a retry reuses it
        upper = self._reserve and job.part == "upper"
        attempt = 0
        while True:
            attempt += 1
            worker = await self._acquire(job.submitted_at + job.defer_s, upper)
            try:
                result = await self._factory.process(worker, job, shared)
            except WorkerDied:
                self._died(worker, job, attempt, upper)
                if attempt >= self._max_attempts:
                    raise
                continue
            except BaseException:
                self._release(worker, upper)
                raise
            self._release(worker, upper)
            self.completed += 1
            return SegmentOutcome(result, attempt - 1)

    def status(self) -> dict[str, Any]:
        """For operators and tests: the workers, which are busy, and the queue."""
        return {
            "size": self.size,
            "workers": self._workers,
            "idle": list(self._idle),
            "busy": list(self._busy),
            "upper_busy": self._upper,
            "upper_limit": self._upper_limit(),
            "waiting": len(self._waiters),
            "completed": self.completed,
            "retried": self.retried,
        }

    def backlog(self) -> Backlog:
        """The segments waiting for a worker (not running yet), for backpressure. `full`
        is whether the next lowest rung would wait (the reserve is free to it)."""
        waiting = [w.priority for w in self._waiters if not w.fut.done()]
        full = not self._idle and self._workers >= self.size
        return Backlog(len(waiting), min(waiting, default=None), full)

    def shutdown(self) -> None:
        for worker in self._idle + self._busy:
            self._factory.kill(worker)
        self._idle, self._busy, self._workers, self._upper = [], [], 0, 0
        for waiter in self._waiters:
            waiter.fut.cancel()
        self._waiters = []

    # --- workers --------------------------------------------------------------------

    async def _acquire(self, priority: float, upper: bool) -> W:
        """A worker for a job of this age; `_dispatch` marks it busy."""
        if self._retire is not None:
            self._retire.cancel()
            self._retire = None
        fut: asyncio.Future[W] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(priority, next(self._order), upper, fut)
        self._waiters.append(waiter)
        self._dispatch()  # at once if a worker is free (or can be made) for it
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed over as we were cancelled
                self._release(fut.result(), upper)
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _upper_limit(self) -> int:
        """How many workers upper-rung jobs may hold at once: all but the reserve."""
        return max(1, self.size - 1) if self._reserve else self.size

    def _next_waiter(self) -> _Waiter[W] | None:
        """The oldest waiting job that may take a worker now."""
        self._waiters = [w for w in self._waiters if not w.fut.done()]  # cancelled
        room = self._upper < self._upper_limit()
        allowed = (w for w in self._waiters if room or not w.upper)
        return min(allowed, key=_Waiter.key, default=None)

    def _dispatch(self) -> None:
        """Give free workers (idle, or new while fewer than `size`) to waiting jobs,
        oldest allowed first, until none is free or no waiting job may take one."""
        while (waiter := self._next_waiter()) is not None:
            if self._idle:
                worker = self._idle.pop()
            elif self._workers < self.size:
                worker = self._create()
            else:
                return
            self._waiters.remove(waiter)
            self._busy.append(worker)
            self._upper += waiter.upper
            waiter.fut.set_result(worker)

    def _create(self) -> W:
        self._workers += 1
        return self._factory.spawn()

    def _release(self, worker: W, upper: bool) -> None:
        if worker in self._busy:
            self._busy.remove(worker)
            self._upper -= upper
        self._idle.append(worker)
        self._dispatch()
        if self._idle:
            self._maybe_retire()

    def _died(self, worker: W, job: SegmentJob, attempt: int, upper: bool) -> None:
        self._discard(worker, upper)
        self.retried += 1
        log.warning(
            "media worker died on segment %s of %s (attempt %d)",
            job.source_sequence,
            job.stream_id,
            attempt,
        )

    def _discard(self, worker: W, upper: bool) -> None:
        """A dead worker: forget it; a waiting job gets a fresh one."""
        if worker in self._busy:
            self._busy.remove(worker)
            self._upper -= upper
        self._workers -= 1
        with contextlib.suppress(Exception):  # it is dead already
            self._factory.kill(worker)
        self._dispatch()

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


@dataclass(eq=False)  # one per wait: found and removed by identity
class _Waiter(Generic[W]):
    """A job waiting for a worker."""

    priority: float  # submitted_at + defer_s: lower goes first
    order: int  # ties: first come
    upper: bool  # an upper-rung job, held to `_upper_limit` workers
    fut: asyncio.Future[W]

    def key(self) -> tuple[float, int]:
        return self.priority, self.order
