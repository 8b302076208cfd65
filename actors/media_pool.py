"""The media worker pool of the ingest: a `SegmentPool` of `SegmentWorker`s as Ray actors.

The scheduling (oldest segment first, retries when a worker dies, idle retirement)
is `actors.segment_pool`; this module is how a worker is a Ray actor.

Invariants (besides `SegmentPool`'s):
- At most `settings.media_workers` workers, retired after `media_pool_idle_s` idle.
- Each worker asks for one CPU (libx264 with one thread keeps it busy) and, on a
  cluster with GPUs, `media_gpu_share` of a GPU for the enhancement model.
- A worker actor that dies (`RayActorError`) is `WorkerDied` to the pool: the segment
  is retried on another worker. Actors are never restarted by Ray: the pool replaces them.
"""

from __future__ import annotations

from typing import Any, cast

import ray
from ray import ObjectRef
from ray.actor import ActorHandle
from ray.exceptions import RayActorError

from actors.media_worker import SegmentJob, SegmentResult, SegmentWorker
from actors.segment_pool import SegmentPool, WorkerDied
from lumalive.settings import Settings

__all__ = ["MediaWorker", "MediaPool", "RayWorkers", "worker_options"]


@ray.remote(max_restarts=0, max_task_retries=0)
class MediaWorker(SegmentWorker):
    """SegmentWorker as a Ray actor (see module docstring); resources set by the pool."""


def worker_options(settings: Settings) -> dict[str, Any]:
    """Ray resources of one worker: a CPU for the encoder, and a GPU share when the
    cluster has GPUs (the enhancement and moderation models then run on it)."""
    options: dict[str, Any] = {"num_cpus": 1}
    resources = cast(dict[str, float], ray.cluster_resources())  # type: ignore[no-untyped-call]
    if resources.get("GPU", 0) > 0:
        options["num_gpus"] = settings.media_gpu_share
    return options


Worker = ActorHandle[Any]  # a MediaWorker; Ray's stubs cannot type its methods


class RayWorkers:
    """`MediaWorker` actors, as the pool's `WorkerFactory`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._options: dict[str, Any] | None = None  # read from the cluster on first spawn

    def spawn(self) -> Worker:
        if self._options is None:
            self._options = worker_options(self._settings)
        actor: Any = MediaWorker  # a Ray ActorClass; its stubs do not know `.options`
        handle: Worker = actor.options(**self._options).remote(self._settings)
        return handle

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
        super().__init__(
            RayWorkers(settings),
            size=size or settings.media_workers,
            idle_s=settings.media_pool_idle_s if idle_s is None else idle_s,
            max_attempts=max_attempts,
        )
