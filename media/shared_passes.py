"""A frame hook that enhances a batch for every upscaled rung of a ladder in one call, so
rungs that share learned passes share their work (1080p -> 4K is the first x2 pass of
1080p -> 8K: computed once per frame, not once per rung).

The transcoder (`media.scale.FrameFanout`) calls its hook once per rendition with the
same batch of source frames; `SharedPassHook` answers the first call for a batch by
enhancing it for all its renditions at once (`run_many`, e.g. `Enhancer.enhance_many`)
and the later calls from what that made.

Invariants:
- Each rendition's frames are exactly what the per-rendition hook would give (the
  enhancer's `enhance_many` equals its `enhance` per config); only the work is shared.
- At most one batch's outputs are held, and each is dropped as soon as its rendition
  has taken it: memory is the batch's outputs of all shared rungs at once (bounded by
  `hook_batch`, sized for the largest), on top of the enhancer's own working set.
- A batch is recognised by its content, not only by identity, so a caller that copies
  the batch per rendition still gets each stage computed once; a rendition asked for
  again starts a new batch (still the right frames).
- Tiles (`Rendition.tile`) and renditions outside the shared set go to the plain hook.
- No torch, no Ray: the enhancing is the caller's `run_many`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .ladder import Rendition
from .scale import FrameHook

__all__ = ["RunMany", "SharedPassHook"]

RunMany = Callable[[np.ndarray, Sequence[Rendition]], Sequence[np.ndarray]]
"""`run_many(frames, renditions) -> one batch of frames per rendition`, in order."""


class SharedPassHook:
    """The frame hook for a ladder: `shared` renditions (the hooked, untiled ones) made
    together per batch by `run_many`; anything else by `single`."""

    def __init__(self, run_many: RunMany, shared: Sequence[Rendition], single: FrameHook) -> None:
        self._run_many = run_many
        self._shared = tuple(r for r in shared if r.tile is None)
        self._names = {r.name for r in self._shared}
        self._single = single
        self._frames: np.ndarray | None = None
        self._ready: dict[str, np.ndarray] = {}

    def __call__(self, frames: np.ndarray, rendition: Rendition) -> np.ndarray:
        if rendition.tile is not None or rendition.name not in self._names:
            return self._single(frames, rendition)
        if not (rendition.name in self._ready and self._holds(frames)):
            # A new batch (or one whose rendition was taken: a repeat of the content).
            self._frames, self._ready = None, {}  # drop the last batch's leftovers first
            made = self._run_many(frames, self._shared)
            self._ready = {r.name: out for r, out in zip(self._shared, made, strict=True)}
            self._frames = frames
        out = self._ready.pop(rendition.name)
        if not self._ready:
            self._frames = None
        return out

    def _holds(self, frames: np.ndarray) -> bool:
        held = self._frames
        if held is None:
            return False
        return held is frames or (held.shape == frames.shape and np.array_equal(held, frames))
