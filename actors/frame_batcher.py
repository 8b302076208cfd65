"""The enhancer pool's Ray-free core: a batching window over a model, and the models of
one pool actor behind it (`actors.enhancer_pool` is the Ray wrapper).

Invariants:
- No Ray, no settings: plain asyncio and numpy (the models are imported on first use),
  so the batching is unit-tested in process and timed on a GPU box without Ray
  (`bench/gpu_check.py`).
- A request gets exactly its own frames back, in order, whatever it was batched with;
  a failing batch fails each of its requests with the same error (nothing is dropped
  silently), and later batches still run.
- One model call at a time per service (a worker thread), so the device holds one
  batch: at most `max_frames` source frames, chunked further by the enhancer.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

__all__ = ["EnhancerService", "FrameBatcher", "default_enhancer", "default_moderator"]

Run = Callable[[np.ndarray, Any], Any]
"""`run(frames, key_arg) -> per-frame results` for one batch of same-shaped frames."""


@dataclass(slots=True)
class _Pending:
    frames: np.ndarray
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Group:
    arg: Any
    items: list[_Pending] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(len(p.frames) for p in self.items)


class FrameBatcher:
    """Gathers requests for `window_s`, then runs each group of compatible requests
    (same key: frame shape and argument) as one call of at most `max_frames` frames.

    `run(frames, arg)` is blocking (a model call) and runs in a worker thread, one
    call at a time; it returns one result per frame (an array, or a list)."""

    def __init__(self, run: Run, *, window_s: float = 0.005, max_frames: int = 32) -> None:
        if max_frames < 1:
            raise ValueError("max_frames must be >= 1")
        self._run = run
        self._window_s = window_s
        self._max_frames = max_frames
        self._groups: dict[Hashable, _Group] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one model call at a time
        self.calls = 0
        self.requests = 0

    async def submit(self, frames: np.ndarray, arg: Any, key: Hashable) -> Any:
        """Results for `frames` (one per frame), batched with others of the same `key`."""
        if len(frames) == 0:
            return self._run(frames, arg)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        group = self._groups.setdefault(key, _Group(arg))
        group.items.append(_Pending(frames, fut))
        self.requests += 1
        if group.frames >= self._max_frames:
            self._start(self._groups.pop(key))
        elif self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_after_window())
        return await fut

    async def _flush_after_window(self) -> None:
        await asyncio.sleep(self._window_s)
        self._flusher = None
        groups, self._groups = list(self._groups.values()), {}
        for group in groups:
            self._start(group)

    def _start(self, group: _Group) -> None:
        task = asyncio.create_task(self._call(group))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _call(self, group: _Group) -> None:
        async with self._lock:
            frames = np.concatenate([p.frames for p in group.items])
            self.calls += 1
            try:
                out = await asyncio.to_thread(self._run, frames, group.arg)
            except Exception as e:  # noqa: BLE001 - each request gets the error
                for p in group.items:
                    if not p.future.done():
                        p.future.set_exception(e)
                return
        start = 0
        for p in group.items:
            n = len(p.frames)
            if not p.future.done():
                p.future.set_result(out[start : start + n])
            start += n


class EnhancerService:
    """The models of one pool actor, loaded on first use, behind two batchers.

    `enhancer_factory` / `moderator_factory` build `models.enhance.Enhancer` (on CUDA
    when there is one) and `models.nsfw.NsfwDetector` (onnxruntime's CUDA provider
    when installed) by default: a seam for tests and other models."""

    def __init__(
        self,
        *,
        window_s: float = 0.005,
        max_frames: int = 32,
        enhancer_factory: Callable[[], Any] | None = None,
        moderator_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._enhancer_factory = enhancer_factory or default_enhancer
        self._moderator_factory = moderator_factory or default_moderator
        self._enhancer: Any = None
        self._moderator: Any = None
        self._enhance = FrameBatcher(self._run_enhance, window_s=window_s, max_frames=max_frames)
        self._score = FrameBatcher(self._run_score, window_s=window_s, max_frames=max_frames)

    async def enhance(self, frames: np.ndarray, config: Any) -> np.ndarray:
        """`Enhancer.enhance(frames, config)`, batched with other streams' frames."""
        key = ("enhance", frames.shape[1:], config)
        return cast(np.ndarray, await self._enhance.submit(frames, config, key))

    async def score(self, frames: Sequence[np.ndarray]) -> list[float]:
        """`FrameModerator.score(frames)`, batched with other streams' frames."""
        if not frames:
            return []
        # Frames of any size: the detector letterboxes each one, so group them all.
        stacked = np.empty(len(frames), dtype=object)
        stacked[:] = list(frames)
        return [float(s) for s in await self._score.submit(stacked, None, "score")]

    def stats(self) -> dict[str, int]:
        return {
            "enhance_calls": self._enhance.calls,
            "enhance_requests": self._enhance.requests,
            "score_calls": self._score.calls,
            "score_requests": self._score.requests,
            "pid": os.getpid(),
        }

    def _run_enhance(self, frames: np.ndarray, config: Any) -> np.ndarray:
        if self._enhancer is None:
            self._enhancer = self._enhancer_factory()
        return cast(np.ndarray, self._enhancer.enhance(frames, config))

    def _run_score(self, frames: np.ndarray, _: Any) -> list[float]:
        if self._moderator is None:
            self._moderator = self._moderator_factory()
        return [float(s) for s in self._moderator.score(list(frames))]


def default_enhancer() -> Any:
    import torch

    from models.enhance import Enhancer

    return Enhancer("cuda" if torch.cuda.is_available() else "cpu")


def default_moderator() -> Any:
    from models.nsfw import NsfwDetector, preferred_providers

    return NsfwDetector(providers=preferred_providers())
