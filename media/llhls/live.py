"""One publisher input's video and audio, from the segmenter's packet tap to LL-HLS
parts.

    Segmenter(on_packet=...) ──SourcePacket (copied)──▶ LiveTranscoder: decode once,
    StreamingEncoder (every LL rendition; LiveAudio: one AAC encode shared by all)
    ──EncodedPart──▶ the caller publishes them

Invariants:
- Packets are copied out of the segmenter's thread (`SourcePacket.of`): the muxer
  reuses the packet right after the tap returns.
- Nothing is decoded before the first keyframe, nor after a packet the decoder
  refused until the next keyframe (later frames would reference what is missing).
- The renditions have audio when the source's container has an audio stream when the
  first frame is decoded (`SourcePacket.audio_rate` of that video packet: the
  segmenter taps audio only after the first video keyframe); audio packets before
  that are dropped, and an input without audio then has none.
- The renditions are chosen once, from the first decoded frame's size (`choose`),
  and the part plan from the source's frame rate.
- A packet marked `classic` (the segmenter cut there: the tap's caller knows) makes
  the frame at its time start a segment in every rendition, and with `classic=True`
  a classic MPEG-TS segment too (`take_classic`). Its frame may come out of the
  decoder later (reordering): the mark waits for the frame at its time; a mark whose
  frame never comes is consumed by the next frame after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

import av
from av.codec.context import CodecContext
from av.packet import Packet
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame

from media.ladder import Rendition

from .audio import LiveAudio
from .classic import ClassicSegment
from .encoder import StreamingEncoder, Tune
from .parts import EncodedPart, PartPlan

__all__ = ["LiveTranscoder", "SourcePacket"]

log = logging.getLogger(__name__)

ChooseRenditions = Callable[[int, int, float], Sequence[Rendition]]


@dataclass(frozen=True, slots=True)
class SourcePacket:
    """A video packet of the source, on the stream timeline, with what opens a decoder."""

    data: bytes
    pts: int | None
    dts: int | None
    time_base: Fraction
    keyframe: bool
    arrived: float  # time.time() when the tap saw it
    codec: str
    extradata: bytes | None
    fps: float
    audio: bool = False  # an audio packet (`fps` unused)
    audio_rate: int = 0  # the source's audio sample rate; 0: it has no audio
    classic: int | None = None  # the segmenter's segment this video packet starts

    @classmethod
    def of(cls, packet: Packet[Stream]) -> SourcePacket | None:
        """A copy of a tapped packet; None for anything but video or audio with a time
        base."""
        stream: Any = packet.stream
        if stream is None or stream.type not in ("video", "audio") or packet.time_base is None:
            return None
        ctx = stream.codec_context
        audio = stream.type == "audio"
        rate = None if audio else stream.average_rate or stream.guessed_rate
        return cls(
            data=bytes(packet),
            pts=packet.pts,
            dts=packet.dts,
            time_base=packet.time_base,
            keyframe=packet.is_keyframe,
            arrived=time.time(),
            codec=ctx.name,
            extradata=bytes(ctx.extradata) if ctx.extradata else None,
            fps=float(rate) if rate else 0.0,
            audio=audio,
            audio_rate=ctx.sample_rate if audio else _audio_rate(stream),
        )


def _audio_rate(video: Any) -> int:
    """The sample rate of the first audio stream beside `video` in its container."""
    container = getattr(video, "container", None)
    streams = container.streams.audio if container is not None else ()
    return int(streams[0].codec_context.sample_rate or 0) if streams else 0


class LiveTranscoder:
    """Decode one input's video and encode it to every LL rendition, part by part."""

    def __init__(
        self,
        choose: ChooseRenditions,
        *,
        segment_s: float,
        part_s: float,
        epoch: int,
        tune: Tune = "zerolatency",
        preset: str = "veryfast",
        classic: bool = False,
    ) -> None:
        self._choose = choose
        self._classic = classic
        self._marks: list[tuple[int, float]] = []  # (classic sequence, timeline s)
        self._segment_s, self._part_s = segment_s, part_s
        self.epoch = epoch
        self._tune, self._preset = tune, preset
        self._decoder: VideoCodecContext | None = None
        self._resync = True
        self.encoder: StreamingEncoder | None = None
        self.renditions: tuple[Rendition, ...] = ()
        self.decode_errors = 0
        self._wall: tuple[float, float] | None = None  # (timeline s, time.time()) anchor

    def wall(self, t: float) -> float:
        """The wall clock at which timeline time `t` arrived (from the first frame's)."""
        if self._wall is None:
            return time.time()
        t0, w0 = self._wall
        return w0 + (t - t0)

    def push(self, p: SourcePacket) -> list[EncodedPart]:
        if p.audio:
            self._push_audio(p)
            return []
        if self._decoder is None:
            self._decoder = _decoder(p)
        if p.classic is not None and (ts := p.pts if p.pts is not None else p.dts) is not None:
            self._marks.append((p.classic, float(ts * p.time_base)))
        if self._resync and not p.keyframe:
            return []
        self._resync = False
        packet = Packet(p.data)
        packet.pts, packet.dts, packet.time_base = p.pts, p.dts, p.time_base
        try:
            frames = self._decoder.decode(packet)
        except av.FFmpegError as e:
            self.decode_errors += 1
            log.debug("live encoder: undecodable packet: %s", e)
            self._resync = True
            return []
        out: list[EncodedPart] = []
        for frame in frames:
            assert isinstance(frame, VideoFrame)
            out += self._encode(frame, p)
        return out

    def _push_audio(self, p: SourcePacket) -> None:
        audio = self.encoder.audio if self.encoder is not None else None
        if audio is None:
            return  # no video yet, or a source without audio when it began
        packet = Packet(p.data)
        packet.pts, packet.dts, packet.time_base = p.pts, p.dts, p.time_base
        audio.push(p.codec, p.extradata, packet)

    def close(self) -> list[EncodedPart]:
        """Flush the decoder and the encoder: the input ended."""
        out: list[EncodedPart] = []
        if self._decoder is not None and not self._resync:
            try:
                for frame in self._decoder.decode(None):
                    assert isinstance(frame, VideoFrame)
                    out += self._encode(frame, None)
            except av.FFmpegError:
                self.decode_errors += 1
        if self.encoder is not None:
            out += self.encoder.close()
        return out

    def abort(self) -> None:
        if self.encoder is not None:
            self.encoder.abort()

    def take_classic(self) -> list[ClassicSegment]:
        return self.encoder.take_classic() if self.encoder is not None else []

    def _mark(self, t: float, frame_s: float) -> int | None:
        """The classic segment starting at the frame at `t`, if one does."""
        mark = None
        while self._marks and self._marks[0][1] <= t + frame_s / 2:
            mark = self._marks.pop(0)[0]
        return mark

    def _encode(self, frame: VideoFrame, p: SourcePacket | None) -> list[EncodedPart]:
        if frame.pts is None or frame.time_base is None:
            return []
        t = float(frame.pts * frame.time_base)
        if self.encoder is None:
            if p is None:
                return []
            if not self._open(frame, p, t):
                return []
        assert self.encoder is not None
        mark = self._mark(t, self.encoder.plan.frame_s)
        return self.encoder.push(
            frame, t, keyframe=bool(frame.key_frame), classic=mark, damaged=frame.is_corrupt
        )

    def _open(self, frame: VideoFrame, p: SourcePacket, t: float) -> bool:
        fps = p.fps if 5.0 <= p.fps <= 120.0 else 30.0
        self.renditions = tuple(self._choose(frame.width, frame.height, fps))
        if not self.renditions:
            return False
        plan = PartPlan.for_rate(fps, self._segment_s, self._part_s)
        # One encode for all: at the highest bitrate any of these rungs asks for.
        kbps = max(r.audio_kbps for r in self.renditions)
        audio = LiveAudio(p.audio_rate, kbps) if p.audio_rate > 0 else None
        self.encoder = StreamingEncoder(
            self.renditions,
            plan,
            epoch=self.epoch,
            tune=self._tune,
            preset=self._preset,
            audio=audio,
            classic=self._classic,
        )
        self._wall = (t, p.arrived)
        return True


def _decoder(p: SourcePacket) -> VideoCodecContext:
    ctx = cast(VideoCodecContext, CodecContext.create(p.codec, "r"))
    if p.extradata:
        ctx.extradata = p.extradata
    ctx.thread_count = 1  # no frame threads: a frame comes out when its packet goes in
    return ctx
