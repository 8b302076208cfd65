"""The enhancer pool: actors that load the frame models once and serve every media worker.

    media worker (CPU: decode, encode) --ray.put(frame batch)--> EnhancerActor
        FrameBatcher: requests arriving within `window_s` that share a source size
        and an `EnhanceConfig` go through the network as one batch (several streams)
        --> frames back through the object store --> the worker encodes them

On a GPU cluster each actor holds `media_enhancer_gpu_share` of a GPU, the network in
fp16/channels_last with its tiles (`models.enhance`); on a CPU cluster the same actor
runs on CPU (and by default there is none: workers run the models themselves, which
on CPU is as fast and keeps the work where the CPU was lent).

Invariants:
- The batching and the models are `actors.frame_batcher` (`FrameBatcher`,
  `EnhancerService`: plain asyncio, no Ray); this module only makes them actors, says
  what each asks Ray for, and gives workers the clients that call them.
- Moderation (`score`) is batched the same way, its frames scored in one call.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import ray

from actors.frame_batcher import EnhancerService
from actors.media_memory import HOOK_PIXELS, MiB
from lumalive.settings import Settings
from models.footprint import MAX_PIXELS_CUDA, TILE_BATCH, TILE_CUDA, enhance_working_set_bytes

__all__ = [
    "EnhancerActor",
    "RemoteEnhancer",
    "RemoteModerator",
    "enhancer_memory_bytes",
    "enhancer_options",
    "pool_size",
    "start_enhancers",
]

log = logging.getLogger(__name__)

# --- Ray: thin wrappers ---------------------------------------------------------------


@ray.remote(max_restarts=-1, max_task_retries=2)
class EnhancerActor(EnhancerService):
    """EnhancerService as a Ray actor (async: requests from many workers interleave and
    batch); resources from `enhancer_options`. Restarted by Ray if it dies: it holds
    nothing but models, and a worker's call is retried."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(window_s=settings.media_enhancer_window_ms / 1000)

    async def ping(self) -> int:
        return os.getpid()


def pool_size(settings: Settings, gpus: float) -> int:
    """Enhancer actors for a cluster with `gpus` GPUs: `media_enhancers`, or one per
    `media_enhancer_gpu_share` of each GPU (none without GPUs)."""
    if settings.media_enhancers is not None:
        return settings.media_enhancers
    if gpus <= 0:
        return 0
    return max(1, int(gpus / settings.media_enhancer_gpu_share))


# An enhancer actor with CUDA: torch, its CUDA context and kernels on the host side.
ENHANCER_PROCESS_BYTES = 1536 * MiB
# Requests one enhancer call gathers at most (the batching window's cap).
ENHANCER_MAX_REQUESTS = 8


def enhancer_memory_bytes(half: bool) -> int:
    """What one enhancer actor declares to Ray: its process, the enhancer's working
    set for an 8K frame (host memory on CPU; on CUDA the same figure bounds the GPU's),
    and `ENHANCER_MAX_REQUESTS` requests' frames in and out, each at most
    `HOOK_PIXELS` out and eight 1080p RGB frames in (`hook_batch`)."""
    working = enhance_working_set_bytes(
        (7680, 4320),
        tile=TILE_CUDA if half else 256,
        tile_batch=TILE_BATCH,
        max_pixels=MAX_PIXELS_CUDA if half else 3840 * 2160,
        half=half,
    )
    per_request = HOOK_PIXELS * 3 + 8 * 1920 * 1080 * 3
    return ENHANCER_PROCESS_BYTES + working + ENHANCER_MAX_REQUESTS * per_request


def enhancer_options(settings: Settings, gpus: float) -> dict[str, Any]:
    """Ray resources of one enhancer actor: a GPU share on GPU clusters, and memory from
    `enhancer_memory_bytes`. No CPU: a worker that calls it waits for the answer, so the
    CPU that worker declared is idle meanwhile, and the actor runs one model call at a
    time (at most one waiting worker's CPU in use)."""
    if gpus > 0:
        return {
            "num_cpus": 0,
            "num_gpus": settings.media_enhancer_gpu_share,
            "memory": enhancer_memory_bytes(half=True),
        }
    return {"num_cpus": 0, "memory": enhancer_memory_bytes(half=False)}


def start_enhancers(settings: Settings) -> list[Any]:
    """The pool's actors (none when workers run the models themselves)."""
    resources = cast(dict[str, float], ray.cluster_resources())  # type: ignore[no-untyped-call]
    gpus = resources.get("GPU", 0.0)
    actor: Any = EnhancerActor  # a Ray ActorClass; its stubs do not know `.options`
    options = enhancer_options(settings, gpus)
    return [actor.options(**options).remote(settings) for _ in range(pool_size(settings, gpus))]


class RemoteEnhancer:
    """What a media worker's frame hook calls when there is a pool: `enhance(frames,
    config)` on one of the actors, round robin, frames through the object store."""

    def __init__(self, actors: Sequence[Any]) -> None:
        if not actors:
            raise ValueError("no enhancer actors")
        self._next = itertools.cycle(actors)

    def enhance(self, frames: np.ndarray, config: Any) -> np.ndarray:
        ref = ray.put(np.ascontiguousarray(frames))
        return cast(np.ndarray, ray.get(next(self._next).enhance.remote(ref, config)))


class RemoteModerator:
    """`FrameModerator.score` on the pool (one frame per second per stream, batched)."""

    def __init__(self, actors: Sequence[Any]) -> None:
        if not actors:
            raise ValueError("no enhancer actors")
        self._next = itertools.cycle(actors)

    def score(self, frames: Sequence[np.ndarray]) -> list[float]:
        return cast(list[float], ray.get(next(self._next).score.remote(list(frames))))
