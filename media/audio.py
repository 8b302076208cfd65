"""A segment's audio, encoded to AAC-LC once per bitrate and muxed into every rendition.

Invariants:
- Audio is decoded, downmixed to stereo and encoded on the sample clock of the
  source's rate, so the packets keep the source's timing.
- A decode error raises `CorruptSegmentError`.

Known trade-off of per-segment audio: each segment's AAC encode starts with 1024
samples of encoder priming whose timestamps overlap the previous segment's last
frame (players keep one of them), and the AAC decode of a segment's first frame
lacks the previous frame's overlap. Both are inaudible in practice; a stream that
needs sample-exact audio should copy the source's AAC instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler

from .demux import CorruptSegmentError, DemuxedSegment

__all__ = ["AAC_FRAME", "EncodedAudio", "encode_audio"]

AAC_FRAME = 1024  # samples per AAC-LC frame


@dataclass(frozen=True, slots=True)
class EncodedAudio:
    """One AAC packet on the `1/sample_rate` clock."""

    data: bytes
    pts: int
    dts: int
    duration: int


def encode_audio(source: DemuxedSegment, kbps: int) -> list[EncodedAudio]:
    """The segment's audio as stereo AAC-LC at `kbps`, on the sample clock."""
    rate = source.audio_rate
    decoder = cast(AudioCodecContext, av.CodecContext.create(source.audio_codec, "r"))
    decoder.extradata = source.audio_extradata
    decoder.sample_rate = rate
    encoder = _aac_encoder(rate, kbps)
    resampler = AudioResampler(format="fltp", layout="stereo", rate=rate, frame_size=AAC_FRAME)
    out: list[EncodedAudio] = []
    for packet in source.audio:
        try:
            frames = decoder.decode(packet)
        except av.FFmpegError as e:
            raise CorruptSegmentError(f"audio decode failed: {e}") from e
        for frame in frames:
            # Onto the sample clock, so the resampler and encoder keep source timing.
            if frame.pts is not None:
                frame.pts = round(frame.pts * packet.time_base * rate)
            frame.time_base = Fraction(1, rate)
            out += _encode(encoder, resampler.resample(frame))
    out += _encode(encoder, resampler.resample(None))
    out += _encode(encoder, [None])
    return out


def _aac_encoder(rate: int, kbps: int) -> AudioCodecContext:
    encoder = av.CodecContext.create("aac", "w")
    encoder.sample_rate, encoder.layout, encoder.format = rate, "stereo", "fltp"
    encoder.bit_rate = kbps * 1000
    encoder.time_base = Fraction(1, rate)
    encoder.open()
    return encoder


def _encode(encoder: AudioCodecContext, frames: Iterable[AudioFrame | None]) -> list[EncodedAudio]:
    out: list[EncodedAudio] = []
    for frame in frames:
        for p in encoder.encode(frame):
            # The AAC encoder times every packet; dts == pts for audio.
            pts = p.pts if p.pts is not None else 0
            dts = p.dts if p.dts is not None else pts
            out.append(EncodedAudio(bytes(p), pts, dts, p.duration or AAC_FRAME))
    return out
