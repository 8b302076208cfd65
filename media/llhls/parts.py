"""What a live LL-HLS rendition is made of: its parts, its segments, and the plan that
sizes them.

Invariants:
- A segment is a run of parts; its first part starts with an IDR frame (INDEPENDENT),
  its bytes are its parts' bytes concatenated (one fMP4 fragment sequence after the
  rendition's init segment).
- Parts of one segment are numbered 0, 1, 2, ...; segments are numbered densely per
  rendition (the HLS media sequence number).
- Every part lasts at most the plan's `part_target` (PART-TARGET): the encoder cuts
  a part after `part_frames` frames, and `part_target` leaves half a frame of slack
  for the millisecond timestamps of FLV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["EncodedPart", "PartPlan", "part_name", "segment_name", "init_name"]


@dataclass(frozen=True, slots=True)
class PartPlan:
    """How long parts and segments are, for a frame rate.

    `part_frames` is the frame count closest to `part_s` seconds that divides the
    segment's frames where one does (25 fps, 2 s, 0.4 s: 10 frames, 5 parts a segment),
    so a segment is whole parts and the last part is not a stub.
    """

    fps: float
    segment_s: float
    part_frames: int

    @classmethod
    def for_rate(cls, fps: float, segment_s: float = 2.0, part_s: float = 0.4) -> PartPlan:
        if fps <= 0 or segment_s <= 0 or part_s <= 0:
            raise ValueError("fps, segment_s and part_s must be positive")
        segment_frames = max(1, round(fps * segment_s))
        lo, hi = max(1, math.ceil(fps * 0.33)), max(1, math.floor(fps * 0.5))
        divisors = [n for n in range(lo, hi + 1) if segment_frames % n == 0]
        wanted = fps * part_s
        pool = divisors or list(range(lo, max(lo, hi) + 1))
        frames = min(pool, key=lambda n: (abs(n - wanted), n))
        return cls(fps, segment_s, frames)

    @property
    def frame_s(self) -> float:
        return 1.0 / self.fps

    @property
    def part_target(self) -> float:
        """EXT-X-PART-INF:PART-TARGET: a part's frames plus half a frame of slack."""
        return math.ceil((self.part_frames + 0.5) / self.fps * 1000) / 1000

    @property
    def fragment_us(self) -> int:
        """The mp4 muxer's `frag_duration`: it flushes a fragment when the next frame
        is this far after the fragment's first, i.e. after `part_frames` frames."""
        return int((self.part_frames - 0.5) / self.fps * 1_000_000)


@dataclass(frozen=True, slots=True)
class EncodedPart:
    """One part of one rendition, as the encoder made it."""

    rendition: str
    epoch: int  # the encoder session (a new input: a new init segment)
    segment: int  # the encoder's own segment count in this session, from 0
    index: int  # the part's number within its segment
    start: float  # timeline seconds of its first frame
    duration: float
    frames: int
    independent: bool  # starts with an IDR frame
    data: bytes  # moof+mdat


def segment_name(sequence: int) -> str:
    return f"{sequence:08d}.m4s"


def part_name(sequence: int, index: int) -> str:
    return f"{sequence:08d}.{index}.m4s"


def init_name(epoch: int) -> str:
    return f"init-{epoch}.mp4"
