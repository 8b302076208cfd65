"""The media worker pool: `SegmentWorker`s as Ray actors, one segment at a time each.

Invariants:
- At most `settings.media_workers` workers; each runs one segment at a time (its
  encoder uses one thread), so a segment waits in the pool, not behind another one
  inside a worker, and a worker that dies loses exactly the segment it was running.
- A worker that dies mid-segment costs a retry on another worker, not a gap: the
  segment is resubmitted (up to `max_attempts` times in all) ahead of newer ones,
  and the dead worker is replaced on demand.
- Workers are created on first use and retired after `media_pool_idle_s` without
  work, so an idle ingest holds no CPUs that other Ray jobs could use.
- Each worker asks for one CPU (libx264 with one thread keeps it busy) and, on a
  cluster with GPUs, `media_gpu_share` of a GPU for the enhancement model.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayActorError

from actors.media_worker import SegmentJob, SegmentOutcome, SegmentResult, SegmentWorker
from lumalive.settings import Settings

__all__ = ["MediaWorker", "MediaPool", "worker_options"]

log = logging.getLogger(__name__)


@ray.remote(max_restarts=0, max_task_retries=0)
class MediaWorker(SegmentWorker):
    """SegmentWorker as a Ray actor (see module docstring); resources set by the pool."""


def worker_options(settings: Settings) -> dict[str, Any]:
    """Ray resources of one worker: a CPU for the encoder, and a GPU share when the
    cluster has GPUs (the enhancement and moderation models then run on it)."""
    options: dict[str, Any] = {"num_cpus": 1}
    if ray.cluster_resources().get("GPU", 0) > 0:
        options["num_gpus"] = settings.media_gpu_share
    return options


class MediaPool:
    """Hands segments to idle workers, oldest segment first. Event-loop thread only."""

    def __init__(
        self,
        settings: Settings,
        *,
        size: int | None = None,
        max_attempts: int = 3,
        idle_s: float | None = None,
    ) -> None:
        self._settings = settings
        self.size = size or settings.media_workers
        self._max_attempts = max_attempts
        self._idle_s = settings.media_pool_idle_s if idle_s is None else idle_s
        self._idle: list[ActorHandle] = []
        self._busy: list[ActorHandle] = []
        self._workers = 0  # created and not discarded
        self._waiters: list[tuple[float, int, asyncio.Future[ActorHandle]]] = []
        self._order = itertools.count()
        self._retire: asyncio.TimerHandle | None = None
        self._options: dict[str, Any] | None = None
        self.completed = 0
        self.retried = 0

    async def run(self, job: SegmentJob, data: bytes) -> SegmentOutcome:
        """The worker's result for one segment. Raises what the worker raised (a bug),
        or RayActorError once `max_attempts` workers died running it."""
        ref = ray.put(data)  # once: a retry reuses the object
        attempt = 0
        while True:
            attempt += 1
            worker = await self._acquire(job.submitted_at)
            try:
                result: SegmentResult = await worker.process.remote(job, ref)
            except RayActorError:
                self._discard(worker)
                self.retried += 1
                log.warning(
                    "media worker died on segment %s of %s (attempt %d)",
                    job.source_sequence,
                    job.stream_id,
                    attempt,
                )
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

    def shutdown(self) -> None:
        for worker in self._idle + self._busy:
            ray.kill(worker, no_restart=True)
        self._idle, self._busy, self._workers = [], [], 0
        for _, _, fut in self._waiters:
            fut.cancel()
        self._waiters = []

    # --- workers --------------------------------------------------------------------

    async def _acquire(self, priority: float) -> ActorHandle:
        if self._retire is not None:
            self._retire.cancel()
            self._retire = None
        if self._idle:
            worker = self._idle.pop()
        elif self._workers < self.size:
            worker = self._create()
        else:
            fut: asyncio.Future[ActorHandle] = asyncio.get_running_loop().create_future()
            entry = (priority, next(self._order), fut)
            heapq.heappush(self._waiters, entry)
            try:
                worker = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():  # handed over as we were cancelled
                    self._release(fut.result())
                elif entry in self._waiters:
                    self._waiters.remove(entry)
                    heapq.heapify(self._waiters)
                raise
            return worker  # _hand_over already marked it busy
        self._busy.append(worker)
        return worker

    def _create(self) -> ActorHandle:
        if self._options is None:
            self._options = worker_options(self._settings)
        self._workers += 1
        return MediaWorker.options(**self._options).remote(self._settings)

    def _release(self, worker: ActorHandle) -> None:
        if worker in self._busy:
            self._busy.remove(worker)
        if not self._hand_over(worker):
            self._idle.append(worker)
            self._maybe_retire()

    def _discard(self, worker: ActorHandle) -> None:
        """A dead worker: forget it; a waiting segment gets a fresh one."""
        if worker in self._busy:
            self._busy.remove(worker)
        self._workers -= 1
        with contextlib.suppress(Exception):  # it is dead already
            ray.kill(worker, no_restart=True)
        while self._waiters and self._workers < self.size:
            fresh = self._create()
            if not self._hand_over(fresh):
                self._idle.append(fresh)
                break

    def _hand_over(self, worker: ActorHandle) -> bool:
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
            ray.kill(worker, no_restart=True)
        self._workers -= len(self._idle)
        self._idle = []
        log.info("media pool idle for %.0f s: workers retired", self._idle_s)
