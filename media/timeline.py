"""The stream timeline a segmenter writes on: one input's timestamps, rebased.

Invariants:
- Timeline seconds = input seconds + a shift, fixed at the first keyframe (and at
  the first keyframe after each reset) so that it lands on `end`, where the last
  segment ended: consecutive segments are contiguous and the timeline only moves
  forward, also across a timestamp reset inside one input.
- A video dts that jumps forward by more than `_MAX_FORWARD_JUMP_S`, or steps back
  by more than a frame, is a reset; anything smaller is jitter.
- Rebased dts strictly increase per input stream (a packet that would break this is
  refused), because the MPEG-TS muxer rejects anything else.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["TIMELINE_ORIGIN_S", "Timeline"]

# Where a stream's timeline starts. Not zero, because encoders emit packets before
# their first frame's pts (x264 B-frame delay: dts < pts; AAC priming: 1024 samples),
# and the MPEG-TS muxer answers a negative timestamp by shifting the whole segment,
# which would break the continuity between independently transcoded segments.
TIMELINE_ORIGIN_S = 10.0
# A video dts jump larger than this (forward), or any step back of more than a frame,
# is a timestamp reset rather than jitter.
_MAX_FORWARD_JUMP_S = 10.0


class Timeline:
    """Input seconds -> timeline seconds for one input, and the checks that keep the
    rebased timestamps muxable."""

    def __init__(self, start: float, frame_s: float) -> None:
        self.end = start  # just after the last finished segment
        self._frame_s = frame_s
        # Input seconds -> timeline seconds; set at the first keyframe and each reset.
        self._shift: float | None = None
        self._last_video_dts: float | None = None
        self._last_dts: dict[int, int] = {}  # per input stream index, rebased

    @property
    def anchored(self) -> bool:
        """Whether the shift is known (a keyframe came since the start or the reset)."""
        return self._shift is not None

    def anchor(self, dts_s: float, pts_s: float) -> None:
        """At a keyframe: if not anchored yet, make this keyframe start at `end`."""
        if self._shift is None:
            self._shift = self.end - min(dts_s, pts_s)

    def at(self, seconds: float) -> float:
        """The timeline position of input time `seconds` (anchored only)."""
        assert self._shift is not None
        return seconds + self._shift

    def is_reset(self, dts_s: float) -> bool:
        """Whether this video dts is a timestamp reset rather than the next frame."""
        last = self._last_video_dts
        if last is None:
            return False
        return dts_s < last - self._frame_s or dts_s > last + _MAX_FORWARD_JUMP_S

    def is_repeat(self, dts_s: float) -> bool:
        """A video dts not after the last one (repeated or slightly out of order)."""
        return self._last_video_dts is not None and dts_s <= self._last_video_dts

    def note_video(self, dts_s: float) -> None:
        self._last_video_dts = dts_s

    def reset(self) -> None:
        """Forget the input's timestamps: the next keyframe anchors anew at `end`."""
        self._shift = None
        self._last_video_dts = None
        self._last_dts.clear()

    def advance(self, end: float) -> None:
        """A segment ended at `end`."""
        self.end = max(self.end, end)

    def rebase(self, index: int, pts: int, dts: int, tb: Fraction) -> tuple[int, int] | None:
        """(pts, dts) of input stream `index` in timeline ticks, or None when the dts
        would not be after that stream's last one."""
        assert self._shift is not None
        shift = round(self._shift / tb)
        new_dts = dts + shift
        if new_dts <= self._last_dts.get(index, -(2**62)):
            return None
        self._last_dts[index] = new_dts
        return pts + shift, new_dts
