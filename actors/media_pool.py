"""The media worker pool of the ingest: a `SegmentPool` of `SegmentWorker`s as Ray actors.

The scheduling (oldest segment first, retries when a worker dies, idle retirement)
is `actors.segment_pool`; this module is how a worker is a Ray actor.

Invariants (besides `SegmentPool`'s):
- At most `settings.media_workers` workers, retired after `media_pool_idle_s` idle,
  and no more than the alive nodes hold (`actors.placement.pool_capacity`).
- Each worker asks for what `actors.placement.worker_options` says: CPUs for x264
  (one by default), the encode/NVENC resources when configured and, on a cluster with
  GPUs, `media_gpu_share` of a GPU for the enhancement model.
- Each worker declares `memory=` (`actors.media_memory.worker_memory_bytes`), and
  with an enhancer pool (`actors.enhancer_pool`: GPU clusters, or `media_enhancers`)
  gets its actors, started with the first worker and stopped with the pool.
- A worker actor that dies (`RayActorError`) is `WorkerDied` to the pool: the segment
  is retried on another worker. Actors are never restarted by Ray: the pool replaces them.
- With `media_lowest_lane`, a worker is a threaded actor (`max_concurrency=2`), so a
  lowest rung can run in its lane beside an upper-rung job (`SegmentPool`, `lane`);
  otherwise it takes one call at a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, cast

import ray
from ray import ObjectRef
from ray.actor import ActorHandle
from ray.autoscaler.sdk import request_resources
from ray.exceptions import RayActorError

from actors import placement
from actors.enhancer_pool import RemoteEnhancer, RemoteModerator, pool_size, start_enhancers
from actors.media_memory import worker_memory_bytes
from actors.media_worker import SegmentJob, SegmentResult, SegmentWorker
from actors.segment_pool import SegmentPool, WorkerDied
from lumalive.settings import Settings

__all__ = ["MediaWorker", "MediaPool", "RayWorkers", "worker_options"]


@ray.remote(max_restarts=0, max_task_retries=0)
class MediaWorker(SegmentWorker):
    """SegmentWorker as a Ray actor (see module docstring); resources set by the pool."""

    def __init__(self, settings: Settings, enhancers: Sequence[Any] = ()) -> None:
        # With an enhancer pool, the frame hook and moderation call it (frames through
        # the object store); without, the models load in this process.
        pooled: dict[str, Any] = {}
        if enhancers:
            pooled = {
                "enhancer_factory": lambda: RemoteEnhancer(enhancers),
                "moderator_factory": lambda: RemoteModerator(enhancers),
            }
        # A worker given a GPU share decodes with NVDEC (FFmpeg falls back to software).
        nvdec = "cuda" if ray.get_gpu_ids() else None
        super().__init__(settings, decode_hwaccel=nvdec, **pooled)
        # Which Ray node encoded a segment (nodes may share a host name): in its rows.
        self.name = f"{ray.get_runtime_context().get_node_id()[:12]}:{self.name}"


def worker_options(settings: Settings) -> dict[str, Any]:
    """Ray resources of one worker (`actors.placement`): CPUs for the encoder, the
    encode and NVENC resources when configured, a GPU share when the cluster has GPUs."""
    resources = cast(dict[str, float], ray.cluster_resources())  # type: ignore[no-untyped-call]
    options = placement.worker_options(settings, resources)
    # Declared so the scheduler and autoscaler see it; rungs over it are refused by the
    # ingest (`media_memory.within_memory`) before the OOM killer could find them.
    in_process = pool_size(settings, resources.get("GPU", 0.0)) == 0
    options["memory"] = worker_memory_bytes(settings, in_process=in_process)
    return options


Worker = ActorHandle[Any]  # a MediaWorker; Ray's stubs cannot type its methods


class RayWorkers:
    """`MediaWorker` actors, as the pool's `WorkerFactory`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._options: dict[str, Any] | None = None  # read from the cluster on first spawn
        self._enhancers: list[Any] | None = None  # EnhancerActors, started on first spawn

    def options(self) -> dict[str, Any]:
        """What each worker asks Ray for (read from the cluster once)."""
        if self._options is None:
            self._options = worker_options(self._settings)
        return self._options

    def spawn(self) -> Worker:
        if self._enhancers is None:  # the enhancer pool, with the first worker
            self._enhancers = start_enhancers(self._settings)
        actor: Any = MediaWorker  # a Ray ActorClass; its stubs do not know `.options`
        calls = 2 if self._settings.media_lowest_lane else 1  # the lane: a second thread
        handle: Worker = actor.options(**self.options(), max_concurrency=calls).remote(
            self._settings, self._enhancers
        )
        return handle

    def close(self) -> None:
        """Stop the enhancer pool (the workers are the pool's to stop)."""
        for actor in self._enhancers or ():
            ray.kill(actor, no_restart=True)
        self._enhancers = None

    def share(self, data: bytes) -> ObjectRef[bytes]:
        return ray.put(data)

    async def process(self, worker: Worker, job: SegmentJob, data: Any) -> SegmentResult:
        try:
            result: SegmentResult = await worker.process.remote(job, data)
        except RayActorError as e:
            raise WorkerDied(str(e)) from e
        return result

    def kill(self, worker: Worker) -> None:
        ray.kill(worker, no_restart=True)


class MediaPool(SegmentPool[Worker]):
    """The ingest's pool: Ray worker actors, sized and retired by `settings`."""

    def __init__(
        self,
        settings: Settings,
        *,
        size: int | None = None,
        max_attempts: int = 3,
        idle_s: float | None = None,
    ) -> None:
        self._workers_factory = RayWorkers(settings)
        self._room = _Room()
        super().__init__(
            self._workers_factory,
            size=size or settings.media_workers,
            idle_s=settings.media_pool_idle_s if idle_s is None else idle_s,
            max_attempts=max_attempts,
            reserve=settings.media_lowest_reserve,
            lane=settings.media_lowest_lane,
        )

    def shutdown(self) -> None:
        super().shutdown()
        self._workers_factory.close()

    # Placement (issue 9): at most `media_workers`, and no more than the alive nodes can
    # hold now (at least 1: a cluster with no room yet still shows a pending worker), so
    # no segment waits on a worker that no node can take, a node that dies stops counting
    # and one that joins is used by the next segment that finds every worker busy. While
    # segments wait for room, the autoscaler is asked for the whole pool.
    @property
    def size(self) -> int:
        room = self._room.capacity(self._workers_factory.options())
        self._room.ask(self._workers_factory.options(), self._max_size if self._waiters else 0)
        return max(1, min(self._max_size, room))

    @size.setter
    def size(self, value: int) -> None:
        self._max_size = value


class _Room:
    """The cluster's room for workers (`placement.pool_capacity`), read at most every
    `ttl_s`, and the autoscaler request for them (`request_resources`), sent on change."""

    def __init__(self, ttl_s: float = 1.0) -> None:
        self._ttl_s = ttl_s
        self._at = -math.inf
        self._capacity = 0
        self._asked = 0

    def capacity(self, options: dict[str, Any]) -> int:
        now = time.monotonic()
        if now - self._at > self._ttl_s:
            self._capacity = placement.pool_capacity(options, ray.nodes())  # type: ignore[no-untyped-call]
            self._at = now
        return self._capacity

    def ask(self, options: dict[str, Any], workers: int) -> None:
        if workers != self._asked:
            self._asked = workers
            request_resources(bundles=[placement.demand(options)] * workers)
