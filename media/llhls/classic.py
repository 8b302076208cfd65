"""Classic HLS segments from the streaming encoder's own packets: the LL rungs encoded
once (issue 10, "encode once"), remuxed, not re-encoded, into the MPEG-TS segments the
pool would otherwise have encoded again.

    StreamingEncoder ──each rung's H.264 packets──▶ ClassicCutter (per rung, cut at the
    segmenter's cut points) ──+ the shared AAC──▶ remux_ts ──▶ ClassicSegment

Why remux and not list the fMP4 segments in the classic playlist: the classic path
keeps every consumer it has (TS players, the poster, VOD, DVR, retention, analytics)
unchanged; a remux costs a few milliseconds per segment, the encode it replaces a core.

Invariants:
- A segment with a frame the decoder concealed errors in is `damaged`: the caller
  lets the pool decide (it refuses such a segment as corrupt, and the stream records it).
- A classic segment starts where the segmenter cut (`ClassicCutter.start`: the caller
  forces an IDR at that frame) and holds every packet up to the next cut point, so
  its frames are the source segment's frames; the caller checks the count and falls
  back to the pool when it differs (a dropped or undecodable packet).
- Packets are the encoder's, on the stream timeline (90 kHz): the TS has the pool's
  timestamps, so playlists, DVR and VOD see no difference.
- Every audio sample goes into exactly one classic segment: each takes those encoded
  before its end that no earlier one took (audio arriving a little after the video
  cut goes into the next one, as in the pool's segments).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
from av.packet import Packet

from .fmp4 import AudioSample

__all__ = ["ClassicCutter", "ClassicSegment", "EsPacket", "remux_ts"]

TIME_BASE = Fraction(1, 90_000)


@dataclass(frozen=True, slots=True)
class EsPacket:
    """An encoded video packet of one rung, copied out of the encoder (90 kHz)."""

    data: bytes
    pts: int
    dts: int
    keyframe: bool


@dataclass(frozen=True, slots=True)
class ClassicSegment:
    """One rung's MPEG-TS segment of one source segment (`source_sequence`)."""

    rendition: str
    source_sequence: int
    data: bytes
    start: float  # timeline seconds of its first frame
    duration: float
    frames: int
    width: int
    height: int
    codecs: str
    damaged: bool = False  # a frame of it decoded with errors (the pool drops such a segment)


@dataclass(slots=True)
class _Open:
    sequence: int
    start: int  # 90 kHz
    packets: list[EsPacket] = field(default_factory=list)


class ClassicCutter:
    """One rung's packets, grouped by the segmenter's cut points (`start`) into
    segments; `add` returns the segments a packet completed."""

    def __init__(self) -> None:
        self._cuts: list[tuple[int, int]] = []  # (sequence, start 90 kHz) not yet reached
        self._open: _Open | None = None

    def start(self, sequence: int, t: float) -> None:
        """The segmenter's segment `sequence` starts at timeline time `t` (an IDR)."""
        self._cuts.append((sequence, round(t * 90_000)))

    def add(self, packet: EsPacket) -> list[_Open]:
        done = []
        while self._cuts and packet.pts >= self._cuts[0][1]:
            sequence, start = self._cuts.pop(0)
            if self._open is not None:
                done.append(self._open)
            self._open = _Open(sequence, start)
        if self._open is not None:
            self._open.packets.append(packet)
        return done

    def close(self) -> list[_Open]:
        """The input ended: the segment being filled is complete."""
        done = [self._open] if self._open is not None and self._open.packets else []
        self._open = None
        self._cuts.clear()
        return done


def remux_ts(
    packets: list[EsPacket],
    video: av.video.stream.VideoStream,
    audio: list[AudioSample],
    audio_rate: int,
    audio_kbps: int,
) -> bytes:
    """An MPEG-TS segment of these packets (the codec parameters of `video`, the
    encoder's stream) with `audio` (AAC on the 1/audio_rate clock) interleaved by dts."""
    out = io.BytesIO()
    container = av.open(out, "w", format="mpegts")
    try:
        ts_video = container.add_stream_from_template(video)
        ts_audio = (
            container.add_stream(
                "aac", rate=audio_rate, layout="stereo", bit_rate=audio_kbps * 1000
            )
            if audio_rate > 0
            else None
        )
        audio_tb = Fraction(1, audio_rate) if audio_rate > 0 else TIME_BASE
        next_audio = 0
        for p in packets:
            if ts_audio is not None:
                until = p.dts * TIME_BASE
                while next_audio < len(audio) and audio[next_audio].pts * audio_tb <= until:
                    container.mux(_audio_packet(audio[next_audio], audio_tb, ts_audio))
                    next_audio += 1
            packet = Packet(p.data)
            packet.pts, packet.dts, packet.time_base = p.pts, p.dts, TIME_BASE
            packet.is_keyframe = p.keyframe
            packet.stream = ts_video
            container.mux(packet)
        if ts_audio is not None:
            for a in audio[next_audio:]:
                container.mux(_audio_packet(a, audio_tb, ts_audio))
    finally:
        container.close()
    return out.getvalue()


def _audio_packet(a: AudioSample, tb: Fraction, stream: av.audio.stream.AudioStream) -> Packet[Any]:
    packet = Packet(a.data)
    packet.pts = packet.dts = a.pts
    packet.duration, packet.time_base, packet.stream = a.duration, tb, stream
    return packet
