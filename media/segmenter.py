"""Cut a live input into MPEG-TS segments at video keyframes, without re-encoding.

Invariants:
- Every segment starts with a video keyframe and ends just before the first keyframe
  at or after `target_duration` from its start (a GOP is never split). The last
  segment of an input is flushed even if shorter.
- Packets are copied, not decoded: a segment holds exactly the source's packets
  (video and, if present, audio), so transcoding it yields the source's frames.
- Timestamps are rebased onto a stream timeline that starts at `start_time` seconds
  (default `TIMELINE_ORIGIN_S`) and only moves forward: consecutive segments are
  contiguous, also across a timestamp reset inside one input (a relay that keeps
  the connection while the publisher reconnects); the first segment after such a
  reset has `discontinuity=True`.
- Bad input never raises out of iteration: corrupt packets are dropped (video up to
  the next keyframe, so no frame references a missing one), demuxer errors are
  skipped, and everything is counted in `Segmenter.stats`. Only an input that cannot
  be opened, or has no H.264/HEVC video, raises `InvalidSourceError`.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
from av.container import InputContainer, OutputContainer
from av.packet import Packet
from av.stream import Stream

__all__ = [
    "TIMELINE_ORIGIN_S",
    "InvalidSourceError",
    "Segmenter",
    "SegmenterStats",
    "SourceSegment",
]

log = logging.getLogger(__name__)

# Where a stream's timeline starts. Not zero, because encoders emit packets before
# their first frame's pts (x264 B-frame delay: dts < pts; AAC priming: 1024 samples),
# and the MPEG-TS muxer answers a negative timestamp by shifting the whole segment,
# which would break the continuity between independently transcoded segments.
TIMELINE_ORIGIN_S = 10.0
VIDEO_CODECS = frozenset({"h264", "hevc"})
AUDIO_CODECS = frozenset({"aac", "mp3", "ac3", "eac3", "opus"})
# A video dts jump larger than this (forward), or any step back of more than a frame,
# is a timestamp reset rather than jitter.
_MAX_FORWARD_JUMP_S = 10.0
# Audio packets held while no segment is open (about half a second of AAC).
_AUDIO_PREROLL = 24
# After this many demuxer errors in a row without a packet the input is taken as dead.
_MAX_CONSECUTIVE_ERRORS = 64


class InvalidSourceError(ValueError):
    """The input cannot be opened, or carries no H.264/HEVC video."""


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


class _OpenSegment:
    """The segment being written: an MPEG-TS muxer into memory plus its bookkeeping."""

    def __init__(
        self, video: Stream, audio: Stream | None, start: float, discontinuity: bool
    ) -> None:
        self.buffer = io.BytesIO()
        self.output: OutputContainer = av.open(self.buffer, "w", format="mpegts")
        self.video_out = self.output.add_stream_from_template(video)
        self.audio_out = self.output.add_stream_from_template(audio) if audio else None
        self.start = start
        self.end = start  # the latest video pts + one frame
        self.discontinuity = discontinuity
        self.frames = 0
        self.keyframes = 0
        self.audio_packets = 0

    def close(self) -> bytes:
        self.output.close()
        return self.buffer.getvalue()


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
    ) -> None:
        if target_duration <= 0:
            raise ValueError(f"target_duration must be positive, got {target_duration}")
        self.target_duration = target_duration
        self.stats = SegmenterStats()
        self._next_sequence = first_sequence
        self._timeline_end = start_time
        self._pending_discontinuity = discontinuity
        try:
            self._input: InputContainer = av.open(source, "r", format=format, options=options)
        except (av.FFmpegError, OSError, ValueError) as e:
            raise InvalidSourceError(f"cannot open the input: {e}") from e
        videos = [s for s in self._input.streams.video if s.codec_context.name in VIDEO_CODECS]
        if not videos:
            found = [s.codec_context.name for s in self._input.streams.video]
            self._input.close()
            raise InvalidSourceError(f"no H.264/HEVC video stream in the input (found {found})")
        self._video = videos[0]
        audios = [s for s in self._input.streams.audio if s.codec_context.name in AUDIO_CODECS]
        self._audio: Stream | None = audios[0] if audios else None
        ctx = self._video.codec_context
        self.video_codec: str = ctx.name
        self.width: int = ctx.width
        self.height: int = ctx.height
        rate = self._video.guessed_rate or self._video.average_rate
        self.fps: float = float(rate) if rate else 0.0
        self._frame_s = 1 / self.fps if self.fps > 0 else 1 / 30
        # Stream seconds -> timeline seconds; set at the first keyframe and each reset.
        self._shift: float | None = None
        self._last_video_dts: float | None = None
        self._last_dts: dict[int, int] = {}
        self._resync = True  # drop video until a keyframe
        self._audio_preroll: list[tuple[Packet[Stream], int, int, Fraction]] = []
        self._parameter_sets, self._nal_length_size = _avcc_parameter_sets(
            ctx.extradata if ctx.name == "h264" else None  # hvcC also starts with 1
        )
        self._current: _OpenSegment | None = None

    # --- public -------------------------------------------------------------------------

    @property
    def end_time(self) -> float:
        """Timeline position just after the last emitted segment."""
        return self._timeline_end

    @property
    def next_sequence(self) -> int:
        return self._next_sequence

    def __iter__(self) -> Iterator[SourceSegment]:
        return self.segments()

    def segments(self) -> Iterator[SourceSegment]:
        """Yield segments as the input arrives; ends when the input does."""
        try:
            for packet in self._packets():
                yield from self._take(packet)
            if self._current is not None:
                yield self._finish(self._current.end)
        finally:
            self.close()

    def close(self) -> None:
        if self._current is not None:
            self._current.output.close()
            self._current = None
        self._input.close()

    # --- reading ------------------------------------------------------------------------

    def _packets(self) -> Iterator[Packet[Stream]]:
        """Demuxed packets of the chosen streams, surviving demuxer errors."""
        wanted = [self._video] + ([self._audio] if self._audio else [])
        errors_in_row = 0
        while True:
            try:
                for packet in self._input.demux(wanted):
                    errors_in_row = 0
                    # Flush packets (size 0) only tell a decoder to drain; there is no
                    # decoder here.
                    if packet.size:
                        yield packet
                return
            except av.FFmpegError as e:
                self.stats.demux_errors += 1
                self.stats.note_error(f"demux: {e}")
                errors_in_row += 1
                if errors_in_row >= _MAX_CONSECUTIVE_ERRORS:
                    log.warning("giving up on the input after %d demuxer errors", errors_in_row)
                    return
                # av_read_frame resynchronises on the next call; a fresh demux() resumes.
            except IndexError:
                # PyAV 18 flushes every stream at EOF, including streams the demuxer
                # created mid-stream (FLV does when garbage looks like a new tag), and
                # fails on those it never wrapped. Only flush packets are lost.
                return

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
        last = self._last_video_dts
        went_back = last is not None and dts_s < last - self._frame_s
        if last is not None and (went_back or dts_s > last + _MAX_FORWARD_JUMP_S):
            # A timestamp reset: close what we have and continue the timeline after it.
            self.stats.discontinuities += 1
            if self._current is not None:
                yield self._finish(self._current.end)
            self._shift = None
            self._last_video_dts = None
            self._resync = True
            self._pending_discontinuity = True
            self._last_dts.clear()
        elif last is not None and dts_s <= last:
            self._drop()  # a repeated or slightly out-of-order packet: cannot be muxed
            return
        if packet.is_keyframe:
            if self._shift is None:
                self._shift = self._timeline_end - min(dts_s, pts_s)
            start = pts_s + self._shift
            cur = self._current
            # A quarter frame of slack absorbs millisecond rounding of FLV timestamps.
            if cur is not None and start - cur.start >= self.target_duration - self._frame_s / 4:
                yield self._finish(start)
            self._resync = False
        if self._resync or self._shift is None:
            self._drop()
            return
        self._last_video_dts = dts_s
        if self._current is None:
            self._current = _OpenSegment(
                self._video, self._audio, pts_s + self._shift, self._pending_discontinuity
            )
            self._pending_discontinuity = False
            preroll, self._audio_preroll = self._audio_preroll, []
            for a_packet, a_pts, a_dts, a_tb in preroll:
                if float(a_pts * a_tb) + self._shift >= self._current.start:
                    self._take_audio(a_packet, a_pts, a_dts, a_tb)
                else:
                    self._drop()
        cur = self._current
        if cur.frames == 0 and self._parameter_sets:
            packet = self._with_parameter_sets(packet)
        duration_s = float(packet.duration * tb) if packet.duration else self._frame_s
        cur.end = max(cur.end, pts_s + self._shift + duration_s)
        cur.frames += 1
        cur.keyframes += packet.is_keyframe
        self._mux(packet, cur.video_out, pts, dts, tb)

    def _take_audio(self, packet: Packet[Stream], pts: int, dts: int, tb: Fraction) -> None:
        cur = self._current
        if cur is None or cur.audio_out is None or self._shift is None:
            # No segment to attach it to yet. Containers often interleave the audio
            # that starts with a keyframe just before it, so keep a little of it.
            self._audio_preroll.append((packet, pts, dts, tb))
            if len(self._audio_preroll) > _AUDIO_PREROLL:
                self._audio_preroll.pop(0)
                self._drop()
            return
        # Audio from before the segment (interleaving slack) or from the old side of a
        # timestamp reset would land far off the timeline.
        if float(pts * tb) + self._shift < cur.start - 1.0:
            self._drop()
            return
        if self._mux(packet, cur.audio_out, pts, dts, tb):
            cur.audio_packets += 1

    def _mux(self, packet: Packet[Stream], out: Stream, pts: int, dts: int, tb: Fraction) -> bool:
        assert self._shift is not None and self._current is not None
        shift = round(self._shift / tb)
        new_dts = dts + shift
        index = packet.stream.index
        if new_dts <= self._last_dts.get(index, -(2**62)):
            self._drop()
            return False
        self._last_dts[index] = new_dts
        packet.pts, packet.dts = pts + shift, new_dts
        packet.stream = out
        try:
            self._current.output.mux(packet)
        except av.FFmpegError as e:
            self.stats.note_error(f"mux: {e}")
            self._drop()
            return False
        return True

    def _with_parameter_sets(self, packet: Packet[Stream]) -> Packet[Stream]:
        """Prefix SPS/PPS to a segment's first packet when it is not an IDR.

        The muxer's h264_mp4toannexb filter repeats the parameter sets only before IDR
        pictures, but encoders with open GOPs or periodic intra refresh mark recovery-
        point I-frames as keyframes too; a segment starting at one would have no SPS
        and could be decoded by no one (neither the transcoder nor a player joining).
        """
        data = bytes(packet)
        if _IDR_OR_SPS & _avcc_nal_types(data, self._nal_length_size):
            return packet
        fixed = Packet(self._parameter_sets + data)
        fixed.pts, fixed.dts, fixed.duration = packet.pts, packet.dts, packet.duration
        fixed.time_base = packet.time_base
        fixed.is_keyframe = True
        fixed.stream = packet.stream
        return fixed

    def _drop(self) -> None:
        self.stats.dropped_packets += 1

    def _finish(self, end: float) -> SourceSegment:
        cur = self._current
        assert cur is not None
        self._current = None
        data = cur.close()
        duration = max(end - cur.start, 0.0)
        fps = self.fps or (cur.frames / duration if duration else 0.0)
        segment = SourceSegment(
            sequence=self._next_sequence,
            start_pts_seconds=cur.start,
            duration=duration,
            data=data,
            video_codec=self.video_codec,
            width=self.width,
            height=self.height,
            fps=fps if math.isfinite(fps) else 0.0,
            has_audio=cur.audio_packets > 0,
            keyframe_count=cur.keyframes,
            frames=cur.frames,
            discontinuity=cur.discontinuity,
        )
        self._next_sequence += 1
        self._timeline_end = max(self._timeline_end, end)
        self.stats.segments += 1
        return segment


# --- H.264 parameter sets ---------------------------------------------------------------

_IDR_OR_SPS = frozenset({5, 7})


def _avcc_parameter_sets(extradata: bytes | None) -> tuple[bytes, int]:
    """SPS and PPS from an avcC record (FLV/MP4 H.264), re-encoded as length-prefixed
    NAL units like the packets, and the NAL length size; (b"", 4) for anything else."""
    if not extradata or len(extradata) < 7 or extradata[0] != 1:
        return b"", 4
    length_size = (extradata[4] & 0x03) + 1
    out, i = [], 5
    try:
        for count_mask in (0x1F, 0xFF):  # SPS count (5 bits), then PPS count
            count = extradata[i] & count_mask
            i += 1
            for _ in range(count):
                size = int.from_bytes(extradata[i : i + 2], "big")
                nal = extradata[i + 2 : i + 2 + size]
                if len(nal) != size:
                    return b"", 4
                out.append(size.to_bytes(length_size, "big") + nal)
                i += 2 + size
    except IndexError:
        return b"", 4
    return b"".join(out), length_size


def _avcc_nal_types(data: bytes, length_size: int) -> set[int]:
    types, i = set(), 0
    while i + length_size < len(data):
        size = int.from_bytes(data[i : i + length_size], "big")
        types.add(data[i + length_size] & 0x1F)
        i += length_size + size
    return types
