"""From one decoded frame to every rendition: scaling, and the frame hook in batches.

Invariants:
- Every frame reaches every output once, with its timestamp unchanged.
- The hook sees only renditions with `needs_upscale` (when a hook is given), in
  batches of up to `hook_batch` frames, and must return as many frames as it got.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from av.video.frame import VideoFrame
from av.video.reformatter import Interpolation

from .ladder import Rendition
from .mux import RenditionOutput

__all__ = ["FrameFanout", "FrameHook", "Scaler"]

FrameHook = Callable[[np.ndarray, Rendition], np.ndarray]
"""`hook(frames, rendition) -> frames`: a batch of RGB frames `(N, H, W, 3)` uint8 at
the source size in, the same N frames out (any size; they are scaled to the rendition).
Called only for renditions with `needs_upscale`, e.g. for super-resolution."""


class Scaler:
    """Reformats frames to a rendition's size in yuv420p, keeping their timestamps."""

    def __init__(self, interpolation: str, threads: int) -> None:
        try:
            self.interpolation = Interpolation[interpolation.upper()]
        except KeyError:
            raise ValueError(f"unknown interpolation {interpolation!r}") from None
        self.threads = threads

    def scale(self, output: RenditionOutput, frame: VideoFrame) -> VideoFrame:
        r = output.rendition
        out = output.reformatter.reformat(
            output.prepare(frame),  # into the rendition's range (media.hdr)
            r.width,
            r.height,
            output.pix_fmt,
            interpolation=self.interpolation,
            threads=self.threads,
        )
        out.pts, out.time_base = frame.pts, frame.time_base
        return out


class FrameFanout:
    """Sends each decoded frame to every output: scaled at once for most, through the
    frame hook in batches for renditions that need upscaling. `flush` after the last."""

    def __init__(
        self,
        outputs: Sequence[RenditionOutput],
        scaler: Scaler,
        hook: FrameHook | None,
        batch_size: int,
    ) -> None:
        self._direct = [o for o in outputs if not (hook and o.rendition.needs_upscale)]
        self._hooked = [o for o in outputs if hook and o.rendition.needs_upscale]
        self._scaler = scaler
        self._hook = hook
        self._batch_size = batch_size
        self._batch: list[VideoFrame] = []

    def push(self, frame: VideoFrame) -> None:
        for o in self._direct:
            o.encode(self._scaler.scale(o, frame))
        if self._hooked:
            self._batch.append(frame)
            if len(self._batch) >= self._batch_size:
                self.flush()

    def flush(self) -> None:
        """Run the hook on what is batched (a partial batch at the segment's end)."""
        if self._batch:
            batch, self._batch = self._batch, []
            self._run_hook(batch)

    def _run_hook(self, batch: list[VideoFrame]) -> None:
        assert self._hook is not None
        rgb = np.stack([f.to_ndarray(format="rgb24") for f in batch])
        for o in self._hooked:
            enhanced = np.asarray(self._hook(rgb, o.rendition))
            if enhanced.ndim != 4 or len(enhanced) != len(batch) or enhanced.shape[-1] != 3:
                raise ValueError(
                    f"frame_hook must return {len(batch)} RGB frames (N, H, W, 3) for "
                    f"{o.rendition.name}, got shape {enhanced.shape}"
                )
            for src, arr in zip(batch, enhanced, strict=True):
                frame = VideoFrame.from_ndarray(np.ascontiguousarray(arr, dtype=np.uint8), "rgb24")
                frame.pts, frame.time_base = src.pts, src.time_base
                o.encode(self._scaler.scale(o, frame))
