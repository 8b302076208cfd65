"""Frames sampled from a source segment for moderation.

The first frame is always taken, then the first frame at or after each further
1/per_second; decoding is needed anyway (only keyframes stand alone).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .demux import TS_TIME_BASE, decode_video, demux

__all__ = ["sample_frames"]


def sample_frames(segment_bytes: bytes, per_second: float = 1.0) -> list[np.ndarray]:
    """RGB frames `(H, W, 3)` uint8 at `per_second` from a segment, for moderation.
    Raises `CorruptSegmentError` for a segment that cannot be read."""
    if per_second <= 0:
        raise ValueError(f"per_second must be positive, got {per_second}")
    source = demux(segment_bytes)
    interval = Fraction(1) / Fraction(per_second).limit_denominator(1000)
    out: list[np.ndarray] = []
    due: Fraction | None = None
    for frame in decode_video(source):
        if frame.pts is None:
            continue
        t = frame.pts * TS_TIME_BASE
        if due is None or t >= due:
            out.append(frame.to_ndarray(format="rgb24"))
            due = (t if due is None else due) + interval
    return out
