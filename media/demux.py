"""Read one MPEG-TS source segment: its packets, checked, and its decoded video frames.

Invariants:
- Anything wrong with the input (not whole TS packets, unreadable, no video, corrupt
  packets, not starting with a keyframe, undecodable) raises `CorruptSegmentError`.
- The packets outlive their container, so only packet fields (data, pts, dts,
  time_base, flags) may be used, never `packet.stream`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
from av.audio.stream import AudioStream
from av.codec.hwaccel import HWAccel
from av.container import InputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

__all__ = ["TS_TIME_BASE", "CorruptSegmentError", "DemuxedSegment", "decode_video", "demux"]

# The MPEG-TS clock; decoded frames and encoded packets stay in it, so nothing is
# rounded between source and output.
TS_TIME_BASE = Fraction(1, 90_000)
TS_PACKET = 188


class CorruptSegmentError(ValueError):
    """The segment bytes cannot be transcoded without losing or inventing frames."""


@dataclass(slots=True)
class DemuxedSegment:
    """All packets of a segment's first video and audio streams, with what decodes them."""

    codec: str
    extradata: bytes | None
    rate: Fraction
    video: list[Packet[Stream]]
    audio: list[Packet[Stream]]
    audio_rate: int
    audio_codec: str
    audio_extradata: bytes | None


def demux(data: bytes) -> DemuxedSegment:
    """All packets of the segment's first video and audio streams, checked."""
    # MPEG-TS is a sequence of 188-byte packets: anything else was cut short (or
    # padded), and the demuxer would quietly return the frames before the cut.
    if len(data) % TS_PACKET:
        raise CorruptSegmentError(f"{len(data)} bytes is not whole MPEG-TS packets: truncated")
    try:
        container = av.open(io.BytesIO(data), "r", format="mpegts")
    except (av.FFmpegError, ValueError) as e:
        raise CorruptSegmentError(f"not an MPEG-TS segment: {e}") from e
    with container:
        if not container.streams.video:
            raise CorruptSegmentError("segment has no video stream")
        vs = container.streams.video[0]
        audio_streams = container.streams.audio
        # An audio stream whose parameters the demuxer never found cannot be decoded.
        a_s = audio_streams[0] if audio_streams and audio_streams[0].sample_rate else None
        video, audio = _packets(container, vs, a_s)
        return _segment(vs, a_s, video, audio)


def _packets(
    container: InputContainer, vs: VideoStream, a_s: AudioStream | None
) -> tuple[list[Packet[Stream]], list[Packet[Stream]]]:
    """Video and audio packets, refusing corrupt ones and a first packet that is no key."""
    video: list[Packet[Stream]] = []
    audio: list[Packet[Stream]] = []
    streams: list[Stream] = [vs] + ([a_s] if a_s else [])
    try:
        for packet in container.demux(streams):
            if not packet.size:
                continue
            if packet.is_corrupt:
                raise CorruptSegmentError(
                    f"corrupt {packet.stream.type} packet at pts {packet.pts}"
                )
            (video if packet.stream is vs else audio).append(packet)
    except av.FFmpegError as e:
        raise CorruptSegmentError(f"demux failed: {e}") from e
    if not video:
        raise CorruptSegmentError("segment has no video frames")
    if not video[0].is_keyframe:
        raise CorruptSegmentError("segment does not start with a keyframe")
    return video, audio


def _segment(
    vs: VideoStream,
    a_s: AudioStream | None,
    video: list[Packet[Stream]],
    audio: list[Packet[Stream]],
) -> DemuxedSegment:
    rate = vs.guessed_rate or vs.average_rate or Fraction(30)
    return DemuxedSegment(
        codec=vs.codec_context.name,
        extradata=vs.codec_context.extradata,
        rate=Fraction(rate),
        video=video,
        audio=audio,
        audio_rate=a_s.codec_context.sample_rate if a_s else 48_000,
        audio_codec=a_s.codec_context.name if a_s else "",
        audio_extradata=a_s.codec_context.extradata if a_s else None,
    )


def decode_video(
    source: DemuxedSegment, threads: int | None = None, hwaccel: str | None = None
) -> Iterator[VideoFrame]:
    """Every decoded frame of the segment, in presentation order, decoder flushed.
    `threads=None` leaves FFmpeg's default. Checking `frame.is_corrupt` is the caller's.
    `hwaccel` (e.g. "cuda": NVDEC) decodes on that device and downloads each frame to
    memory (NV12); FFmpeg falls back to software where the device cannot decode it."""
    accel = HWAccel(device_type=hwaccel) if hwaccel else None
    codec = cast(VideoCodecContext, av.CodecContext.create(source.codec, "r", hwaccel=accel))
    codec.extradata = source.extradata
    if threads is not None:
        codec.thread_count = threads
    for packet in [*source.video, None]:
        try:
            frames = codec.decode(packet)
        except av.FFmpegError as e:
            raise CorruptSegmentError(f"video decode failed: {e}") from e
        yield from frames
