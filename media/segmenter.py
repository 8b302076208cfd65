"""Cut a live input into MPEG-TS segments at video keyframes, without re-encoding.

Invariants:
- Every segment starts with a video keyframe and ends just before the first keyframe
  at or after `target_duration` from its start (a GOP is never split). The last
  segment of an input is flushed even if shorter.
- Packets are copied, not decoded (`media.source_segment`): a segment holds exactly
  the source's packets, so transcoding it yields the source's frames.
- Timestamps are rebased onto a stream timeline (`media.timeline`) that starts at
  `start_time` seconds (default `TIMELINE_ORIGIN_S`) and only moves forward:
  consecutive segments are contiguous, also across a timestamp reset inside one
  input (a relay that keeps the connection while the publisher reconnects); the
  first segment after such a reset has `discontinuity=True`.
- Bad input never raises out of iteration: corrupt packets are dropped (video up to
  the next keyframe, so no frame references a missing one), demuxer errors are
  skipped (`media.source_input`), and everything is counted in `Segmenter.stats`.
  Only an input that cannot be opened, or has no H.264/HEVC video, raises
  `InvalidSourceError`.

This module is the cutting state machine; the modules named above hold the input,
the segment being written and the timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, TypeAlias

import av
from av.packet import Packet
from av.stream import Stream

from media.parameter_sets import ParameterSets
from media.source_input import InvalidSourceError, SourceInput
from media.source_segment import OpenSegment, SourceSegment
from media.timeline import TIMELINE_ORIGIN_S, Timeline

__all__ = [
    "TIMELINE_ORIGIN_S",
    "InvalidSourceError",
    "Segmenter",
    "SegmenterStats",
    "SourceSegment",
]

# Audio packets held while no segment is open (about half a second of AAC).
_AUDIO_PREROLL = 24

# An audio packet held for the next segment, with its pts, dts and time base.
_Held: TypeAlias = "tuple[Packet[Stream], int, int, Fraction]"


@dataclass(slots=True)
class SegmenterStats:
    """What the segmenter had to skip; all counters only grow."""

    packets: int = 0
    corrupt_packets: int = 0
    dropped_packets: int = 0  # before the first keyframe, while resyncing, or untimed
    demux_errors: int = 0
    discontinuities: int = 0
    segments: int = 0
    errors: list[str] = field(default_factory=list)  # the last few error messages

    def note_error(self, message: str) -> None:
        self.errors = [*self.errors[-9:], message]


class Segmenter:
    """Iterate an input as keyframe-aligned `SourceSegment`s.

    `source` is anything `av.open` reads: a path or URL, or a binary file-like object
    (an FLV byte stream from the RTMP server through a pipe needs `format="flv"`).
    For a publisher that reconnects through a new input, pass the previous
    segmenter's `end_time` and next sequence number, so the timeline and numbering
    continue, and `discontinuity=True`.
    """

    def __init__(
        self,
        source: Any,
        *,
        format: str | None = None,
        target_duration: float = 2.0,
        first_sequence: int = 0,
        start_time: float = TIMELINE_ORIGIN_S,
        discontinuity: bool = False,
        options: dict[str, str] | None = None,
        on_packet: Callable[[Packet[Stream]], None] | None = None,
    ) -> None:
        """`on_packet`, a tap for low-latency outputs (WHEP, a streaming encoder), is
        called in this segmenter's thread with each packet about to be muxed, its pts/dts
        already on the stream timeline (its time base unchanged); it must not keep the
        packet (the muxer reuses it) nor raise."""
        if target_duration <= 0:
            raise ValueError(f"target_duration must be positive, got {target_duration}")
        self.target_duration = target_duration
        self.stats = SegmenterStats()
        self._input = SourceInput(source, format=format, options=options)
        self.video_codec: str = self._input.video_codec
        self.width: int = self._input.width
        self.height: int = self._input.height
        self.fps: float = self._input.fps
        self._frame_s = self._input.frame_s
        self._timeline = Timeline(start_time, self._frame_s)
        self._next_sequence = first_sequence
        self._pending_discontinuity = discontinuity
        self._resync = True  # drop video until a keyframe
        self._audio_preroll: list[_Held] = []
        ctx = self._input.video.codec_context
        self._parameter_sets = ParameterSets.from_avcc(
            ctx.extradata if ctx.name == "h264" else None  # hvcC also starts with 1
        )
        self._current: OpenSegment | None = None
        self._on_packet = on_packet

    # --- public -------------------------------------------------------------------------

    @property
    def end_time(self) -> float:
        """Timeline position just after the last emitted segment."""
        return self._timeline.end

    @property
    def next_sequence(self) -> int:
        return self._next_sequence

    def __iter__(self) -> Iterator[SourceSegment]:
        return self.segments()

    def segments(self) -> Iterator[SourceSegment]:
        """Yield segments as the input arrives; ends when the input does."""
        try:
            for packet in self._input.packets(self._demux_error):
                yield from self._take(packet)
            if self._current is not None:
                yield self._finish(self._current.end)
        finally:
            self.close()

    def close(self) -> None:
        if self._current is not None:
            self._current.abort()
            self._current = None
        self._input.close()

    # --- packets in ---------------------------------------------------------------------

    def _demux_error(self, message: str) -> None:
        self.stats.demux_errors += 1
        self.stats.note_error(message)

    def _take(self, packet: Packet[Stream]) -> Iterator[SourceSegment]:
        self.stats.packets += 1
        if packet.is_corrupt:
            self.stats.corrupt_packets += 1
            if packet.stream.type == "video":
                self._resync = True
            return
        tb = packet.time_base
        dts = packet.dts if packet.dts is not None else packet.pts
        pts = packet.pts if packet.pts is not None else dts
        if dts is None or pts is None or tb is None:
            self._drop()
            return
        if packet.stream.type == "video":
            yield from self._take_video(packet, pts, dts, tb)
        else:
            self._take_audio(packet, pts, dts, tb)

    def _take_video(
        self, packet: Packet[Stream], pts: int, dts: int, tb: Fraction
    ) -> Iterator[SourceSegment]:
        dts_s, pts_s = float(dts * tb), float(pts * tb)
        if self._timeline.is_reset(dts_s):
            yield from self._reset()
        elif self._timeline.is_repeat(dts_s):
            self._drop()  # a repeated or slightly out-of-order packet: cannot be muxed
            return
        if packet.is_keyframe:
            yield from self._keyframe(dts_s, pts_s)
        if self._resync or not self._timeline.anchored:
            self._drop()
            return
        self._timeline.note_video(dts_s)
        cur = self._current if self._current is not None else self._open(pts_s)
        if cur.frames == 0:
            packet = self._parameter_sets.prefix(packet)
        duration_s = float(packet.duration * tb) if packet.duration else self._frame_s
        cur.add_frame(self._timeline.at(pts_s) + duration_s, packet.is_keyframe)
        self._mux(packet, cur.video_out, pts, dts, tb)

    def _reset(self) -> Iterator[SourceSegment]:
        """A timestamp reset: close what we have and continue the timeline after it."""
        self.stats.discontinuities += 1
        if self._current is not None:
            yield self._finish(self._current.end)
        self._timeline.reset()
        self._resync = True
        self._pending_discontinuity = True

    def _keyframe(self, dts_s: float, pts_s: float) -> Iterator[SourceSegment]:
        """A keyframe ends the open segment once it is long enough, and ends a resync."""
        self._timeline.anchor(dts_s, pts_s)
        start = self._timeline.at(pts_s)
        cur = self._current
        # A quarter frame of slack absorbs millisecond rounding of FLV timestamps.
        if cur is not None and start - cur.start >= self.target_duration - self._frame_s / 4:
            yield self._finish(start)
        self._resync = False

    def _take_audio(self, packet: Packet[Stream], pts: int, dts: int, tb: Fraction) -> None:
        cur = self._current
        if cur is None or cur.audio_out is None or not self._timeline.anchored:
            self._hold_audio((packet, pts, dts, tb))
            return
        # Audio from before the segment (interleaving slack) or from the old side of a
        # timestamp reset would land far off the timeline.
        if self._timeline.at(float(pts * tb)) < cur.start - 1.0:
            self._drop()
            return
        if self._mux(packet, cur.audio_out, pts, dts, tb):
            cur.audio_packets += 1

    def _hold_audio(self, held: _Held) -> None:
        """No segment to attach audio to yet. Containers often interleave the audio
        that starts with a keyframe just before it, so keep a little of it."""
        self._audio_preroll.append(held)
        if len(self._audio_preroll) > _AUDIO_PREROLL:
            self._audio_preroll.pop(0)
            self._drop()

    def _drop(self) -> None:
        self.stats.dropped_packets += 1

    # --- segments out -------------------------------------------------------------------

    def _open(self, pts_s: float) -> OpenSegment:
        """Start a segment at this video pts, with the held audio that belongs in it."""
        cur = OpenSegment(self._input, self._timeline.at(pts_s), self._pending_discontinuity)
        self._current = cur
        self._pending_discontinuity = False
        preroll, self._audio_preroll = self._audio_preroll, []
        for a_packet, a_pts, a_dts, a_tb in preroll:
            if self._timeline.at(float(a_pts * a_tb)) >= cur.start:
                self._take_audio(a_packet, a_pts, a_dts, a_tb)
            else:
                self._drop()
        return cur

    def _mux(self, packet: Packet[Stream], out: Stream, pts: int, dts: int, tb: Fraction) -> bool:
        assert self._current is not None
        rebased = self._timeline.rebase(packet.stream.index, pts, dts, tb)
        if rebased is None:
            self._drop()
            return False
        if self._on_packet is not None:
            packet.pts, packet.dts = rebased
            self._on_packet(packet)
        try:
            self._current.mux(packet, out, *rebased)
        except av.FFmpegError as e:
            self.stats.note_error(f"mux: {e}")
            self._drop()
            return False
        return True

    def _finish(self, end: float) -> SourceSegment:
        cur = self._current
        assert cur is not None
        self._current = None
        segment = cur.finish(self._next_sequence, end)
        self._next_sequence += 1
        self._timeline.advance(end)
        self.stats.segments += 1
        return segment
