"""Scheduling segments onto a bounded set of workers.

Plain asyncio: how a worker is made, called and killed is a `WorkerFactory`
(`actors.media_pool.RayWorkers` in the ingest: Ray actors), so the scheduling is
testable in process.

Invariants:
- At most `size` workers. Each runs one job at a time, except a lowest rung in its
  *lane* (below): so a job waits in the pool, not behind another one inside a worker.
- A free worker goes to the oldest waiting job that may take it (by
  `SegmentJob.submitted_at`, plus its `defer_s`: a segment's upper rungs wait for the
  next lowest rungs); jobs are never preempted. A job takes an idle worker first, then
  a new one (while fewer than `size`), then a lane.
- The lane (`lane=True`): a worker running an upper-rung job (`SegmentJob.part ==
  "upper"`, `actors.lowest_first`) may run one lowest-rung job beside it, and only
  when no worker is idle and none can be made. Upper and whole jobs never take a lane,
  and nothing runs beside a lowest or whole job; so a worker runs at most two jobs,
  the second a lowest rung started beside an upper one (which may end first, leaving
  the lowest rung alone on it). A lowest rung then never waits because upper rungs
  hold every worker, even on a pool of one, only behind older lowest rungs and what
  runs beside no upper rung. Its cost: the two jobs share the worker's CPUs while both
  run (docs/media.md, *Backpressure*).
- The reserve (`reserve=True`, with `size >= 2`): upper-rung jobs hold at most
  `size - 1` workers at once; lowest-rung and whole jobs take any worker. So one
  worker is always idle, unmade or running a lowest rung: a lowest rung never waits
  because upper rungs hold every worker, only behind older lowest rungs and the first
  job to finish. An upper-rung job skipped for that keeps its place: it takes the next
  worker an upper rung frees, ahead of newer upper rungs. The cost: upper rungs get
  `size - 1` workers' throughput, not `size`. With one worker the reserve cannot apply
  (`lowest_first`). Reserve and lane may both be on: the lane then serves lowest rungs
  that find the reserve busy too.
- `backlog().full` is whether the next lowest rung would wait: no idle worker, none
  to make, and (with lanes) no free lane beside an upper-rung job.
- A worker that dies mid-segment (`WorkerDied`) costs a retry, not a gap: each job it
  was running (two, with a lane) is resubmitted (up to `max_attempts` times in all)
  with its original age and part, so ahead of newer ones, and the dead worker is
  replaced on demand. It counts once against `size`, however many jobs it ran, and is
  never handed out again, even when one of its jobs ends without an error.
- Workers are created on first use and retired after `idle_s` without work, so an
  idle ingest holds nothing that other jobs could use.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from actors.backpressure import Backlog
from actors.media_worker import SegmentJob, SegmentOutcome, SegmentResult

__all__ = ["SegmentPool", "WorkerDied", "WorkerFactory"]

log = logging.getLogger(__name__)

W = TypeVar("W")
Part = Literal["whole", "lowest", "upper"]  # `SegmentJob.part`


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
    """Hands segments to free workers, oldest segment first. Event-loop thread only."""

    def __init__(
        self,
        workers: WorkerFactory[W],
        *,
        size: int,
        idle_s: float,
        max_attempts: int = 3,
        reserve: bool = True,
        lane: bool = False,
    ) -> None:
        self.size = size
        self._factory = workers
        self._max_attempts = max_attempts
        self._idle_s = idle_s
        self._reserve = reserve
        self._lane = lane
        self._idle: list[W] = []
        self._busy: list[_Held[W]] = []  # workers running one job, or two (a lane)
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
        attempt = 0
        while True:
            attempt += 1
            held = await self._acquire(job.submitted_at + job.defer_s, job.part)
            job = dataclasses.replace(job, dispatched_at=time.time())
            try:
                result = await self._factory.process(held.worker, job, shared)
            except WorkerDied:
                self._died(held, job, attempt)
                if attempt >= self._max_attempts:
                    raise
                continue
            except BaseException:
                self._release(held, job.part)
                raise
            self._release(held, job.part)
            self.completed += 1
            return SegmentOutcome(result, attempt - 1)

    def status(self) -> dict[str, Any]:
        """For operators and tests: the workers, which are busy, and the queue."""
        return {
            "size": self.size,
            "workers": self._workers,
            "idle": list(self._idle),
            "busy": [h.worker for h in self._busy],
            "upper_busy": self._upper(),
            "upper_limit": self._upper_limit(),
            "lane": self._lane,
            "lanes_busy": sum(len(h.parts) == 2 for h in self._busy),
            "waiting": len(self._waiters),
            "completed": self.completed,
            "retried": self.retried,
        }

    def backlog(self) -> Backlog:
        """The segments waiting for a worker (not running yet), for backpressure. `full`
        is whether the next lowest rung would wait (the reserve and lanes are free to it)."""
        waiting = [w.priority for w in self._waiters if not w.fut.done()]
        full = not self._idle and self._workers >= self.size and self._free_lane() is None
        return Backlog(len(waiting), min(waiting, default=None), full)

    def shutdown(self) -> None:
        for held in self._busy:
            held.dead = True  # its jobs' ends must not make it idle again
        for worker in self._idle + [h.worker for h in self._busy]:
            self._factory.kill(worker)
        self._idle, self._busy, self._workers = [], [], 0
        for waiter in self._waiters:
            waiter.fut.cancel()
        self._waiters = []

    # --- workers --------------------------------------------------------------------

    async def _acquire(self, priority: float, part: Part) -> _Held[W]:
        """A worker (and its slot) for a job of this age and part; `_dispatch` hands it."""
        if self._retire is not None:
            self._retire.cancel()
            self._retire = None
        fut: asyncio.Future[_Held[W]] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(priority, next(self._order), part, fut)
        self._waiters.append(waiter)
        self._dispatch()  # at once if a worker is free (or can be made) for it
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed over as we were cancelled
                self._release(fut.result(), part)
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _upper(self) -> int:
        """Upper-rung jobs running (at most one per worker)."""
        return sum(part == "upper" for h in self._busy for part in h.parts)

    def _upper_limit(self) -> int:
        """How many workers upper-rung jobs may hold at once: all but the reserve."""
        return max(1, self.size - 1) if self._reserve else self.size

    def _free_lane(self) -> _Held[W] | None:
        """A worker whose lane a lowest rung may take: running one upper-rung job."""
        if not self._lane:
            return None
        return next((h for h in self._busy if h.parts == ["upper"] and not h.dead), None)

    def _next_waiter(self, lowest_only: bool) -> _Waiter[W] | None:
        """The oldest waiting job that may take a worker now (a lane: a lowest rung)."""
        if lowest_only:
            allowed = [w for w in self._waiters if w.part == "lowest"]
        else:
            room = not self._reserve or self._upper() < self._upper_limit()
            allowed = [w for w in self._waiters if room or w.part != "upper"]
        return min(allowed, key=_Waiter.key, default=None)

    def _dispatch(self) -> None:
        """Give free workers (idle, new while fewer than `size`, then lanes) to waiting
        jobs, oldest allowed first, until none is free or no waiting job may take one."""
        while True:
            self._waiters = [w for w in self._waiters if not w.fut.done()]  # cancelled
            if self._idle or self._workers < self.size:
                waiter = self._next_waiter(lowest_only=False)
                if waiter is None:
                    return
                worker = self._idle.pop() if self._idle else self._create()
                held = _Held(worker, [])
                self._busy.append(held)
            else:
                lane = self._free_lane()
                waiter = self._next_waiter(lowest_only=True) if lane else None
                if lane is None or waiter is None:
                    return
                held = lane
            self._waiters.remove(waiter)
            held.parts.append(waiter.part)
            waiter.fut.set_result(held)

    def _create(self) -> W:
        self._workers += 1
        return self._factory.spawn()

    def _release(self, held: _Held[W], part: Part) -> None:
        """A job ended: its worker is idle once it runs nothing (and is alive)."""
        held.parts.remove(part)
        if not held.parts and not held.dead:
            self._busy.remove(held)
            self._idle.append(held.worker)
        self._dispatch()
        if self._idle:
            self._maybe_retire()

    def _died(self, held: _Held[W], job: SegmentJob, attempt: int) -> None:
        held.parts.remove(job.part)
        self._discard(held)
        self.retried += 1
        log.warning(
            "media worker died on segment %s of %s (attempt %d)",
            job.source_sequence,
            job.stream_id,
            attempt,
        )

    def _discard(self, held: _Held[W]) -> None:
        """A dead worker: forget it (once, though two jobs may report it); a waiting job
        gets a fresh one."""
        if not held.dead:
            held.dead = True
            self._busy.remove(held)
            self._workers -= 1
            with contextlib.suppress(Exception):  # it is dead already
                self._factory.kill(held.worker)
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


@dataclass(eq=False)  # one per busy spell: found by identity
class _Held(Generic[W]):
    """A busy worker and the parts of the jobs it runs: one, or an upper rung and then a
    lowest rung in its lane. Dead: discarded, its jobs failing with it."""

    worker: W
    parts: list[Part]
    dead: bool = False


@dataclass(eq=False)  # one per wait: found and removed by identity
class _Waiter(Generic[W]):
    """A job waiting for a worker."""

    priority: float  # submitted_at + defer_s: lower goes first
    order: int  # ties: first come
    part: Part  # "upper": held to `_upper_limit` workers; "lowest": may take a lane
    fut: asyncio.Future[_Held[W]]

    def key(self) -> tuple[float, int]:
        return self.priority, self.order
