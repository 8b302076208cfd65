"""A keyframe-aligned piece of the source as MPEG-TS: `SourceSegment`, the finished
one, and `OpenSegment`, the one being written.

Invariants:
- Packets are copied, not decoded: a segment holds exactly the source's packets
  (video and, if present, audio), so transcoding it yields the source's frames.
- Times are in seconds on the stream timeline (`media.timeline`); a segment's
  duration runs from its first keyframe to where the next segment starts.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import av
from av.container import OutputContainer
from av.packet import Packet
from av.stream import Stream

from media.source_input import SourceInput

__all__ = ["OpenSegment", "SourceSegment"]


@dataclass(frozen=True, slots=True)
class SourceSegment:
    """One keyframe-aligned piece of the source, as MPEG-TS bytes.

    Times are in seconds on the stream timeline (see the module docstring).
    `frames` is the number of video packets, i.e. the frames a decoder will return.
    """

    sequence: int
    start_pts_seconds: float
    duration: float
    data: bytes
    video_codec: str
    width: int
    height: int
    fps: float
    has_audio: bool
    keyframe_count: int
    frames: int
    discontinuity: bool = False

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def end_pts_seconds(self) -> float:
        return self.start_pts_seconds + self.duration


class OpenSegment:
    """The segment being written: an MPEG-TS muxer into memory plus its bookkeeping."""

    def __init__(self, source: SourceInput, start: float, discontinuity: bool) -> None:
        self._source = source
        self._buffer = io.BytesIO()
        self._output: OutputContainer = av.open(self._buffer, "w", format="mpegts")
        self.video_out = self._output.add_stream_from_template(source.video)
        audio = source.audio
        self.audio_out = self._output.add_stream_from_template(audio) if audio else None
        self.start = start
        self.end = start  # the latest video pts + one frame
        self.discontinuity = discontinuity
        self.frames = 0
        self.keyframes = 0
        self.audio_packets = 0

    def add_frame(self, end: float, keyframe: bool) -> None:
        """Count a video packet about to be muxed that ends at `end` (timeline s)."""
        self.end = max(self.end, end)
        self.frames += 1
        self.keyframes += keyframe

    def mux(self, packet: Packet[Stream], out: Stream, pts: int, dts: int) -> None:
        """Write `packet` to `out` with timeline timestamps; raises `av.FFmpegError`."""
        packet.pts, packet.dts = pts, dts
        packet.stream = out
        self._output.mux(packet)

    def abort(self) -> None:
        """Drop the segment unfinished."""
        self._output.close()

    def finish(self, sequence: int, end: float) -> SourceSegment:
        """Close the muxer and return the segment, which ends at `end` (timeline s)."""
        self._output.close()
        duration = max(end - self.start, 0.0)
        fps = self._source.fps or (self.frames / duration if duration else 0.0)
        return SourceSegment(
            sequence=sequence,
            start_pts_seconds=self.start,
            duration=duration,
            data=self._buffer.getvalue(),
            video_codec=self._source.video_codec,
            width=self._source.width,
            height=self._source.height,
            fps=fps if math.isfinite(fps) else 0.0,
            has_audio=self.audio_packets > 0,
            keyframe_count=self.keyframes,
            frames=self.frames,
            discontinuity=self.discontinuity,
        )
