"""A track's frames on the publish's timeline, in FLV milliseconds.

aiortc gives each received frame a pts in its track's RTP clock, counted from the
track's first packet (wraps already undone); audio and video start at unrelated
points and WebRTC syncs them only through RTCP sender reports, which aiortc does not
apply. So each track is anchored where its first frame arrived, on one wall clock
shared by the publish, and advances by its own RTP clock from there: the sender's
capture timing is kept and the tracks line up to within network jitter.

Invariants:
- Times are milliseconds since the publish's origin, never negative.
- A track whose RTP clock jumps ahead of the wall clock by more than `_MAX_DRIFT_MS`
  between two frames (a bogus jump, or aiortc reading a reordered timestamp as a
  wrap) is re-anchored at the arrival time.
- Frames that arrive late keep their RTP times: lateness is this process falling
  behind (a loaded machine, the GIL), not the sender's time. Re-anchoring on it made
  the timeline jump 2 s ahead whenever the lag passed that bound, and each jump was a
  hole in the video or sound that players stop at (the browser-camera stall in CI).
- Video times strictly increase (the segmenter drops a repeated dts).
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["TrackClock"]

_MAX_DRIFT_MS = 2000


class TrackClock:
    """One track's frame times, in ms on the publish's timeline."""

    def __init__(self, origin: float, *, strictly_increasing: bool = False) -> None:
        """`origin`: the publish's start, in the same clock as `arrived` below."""
        self._origin = origin
        self._strict = strictly_increasing
        self._shift: int | None = None  # ms to add to the track's own time
        self._last: int | None = None
        self._previous: tuple[int, int] | None = None  # the last frame's (own, arrival) ms

    def at(self, pts: int | None, time_base: Fraction | None, arrived: float) -> int:
        """The time of a frame with this pts that arrived at `arrived`."""
        arrival_ms = max(0, round((arrived - self._origin) * 1000))
        if pts is None or time_base is None:
            own = arrival_ms  # untimed: arrival is all we have
            self._shift = 0
        else:
            own = round(pts * time_base * 1000)
            if self._shift is None or self._jumped(own, arrival_ms):
                self._shift = arrival_ms - own
            self._previous = (own, arrival_ms)
        ms = max(0, own + self._shift)
        if self._strict and self._last is not None and ms <= self._last:
            ms = self._last + 1
        self._last = ms
        return ms

    def _jumped(self, own: int, arrival_ms: int) -> bool:
        """The sender's clock moved ahead of the wall clock since the last frame."""
        if self._previous is None:
            return True
        last_own, last_arrival = self._previous
        return (own - last_own) - (arrival_ms - last_arrival) > _MAX_DRIFT_MS
