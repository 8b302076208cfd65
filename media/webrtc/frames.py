"""Decoded WebRTC frames in, the FLV tags of an RTMP-like publish out (H.264 + AAC).

aiortc decodes what the browser sends (H.264, VP8, Opus) into `av` frames; the
pipeline takes H.264 with AAC, as RTMP encoders send. So the server encodes: video
with x264 (`tune=zerolatency`: no B-frames, no lookahead, a picture out for each
picture in), a keyframe forced every `keyframe_interval_s` so the segmenter can cut
segments of that length; audio resampled to 48 kHz stereo and encoded as AAC.

Invariants:
- The first video frame fixes the picture size (even width and height); later
  frames of another size (the browser adapting its resolution) are scaled to it, so
  the stream has one decoder configuration.
- The audio has no holes: a gap of more than `_AUDIO_GAP_MS` (up to
  `_SILENCE_MAX_MS`) is filled with silence.
- Each track's sequence header comes before its first frame; video pictures have
  strictly increasing times, keyframes at least `keyframe_interval_s` apart, and
  none between (scene cuts are off).
- Not thread-safe: one thread at a time calls a `MediaEncoder`'s video side, one its
  audio side (the publish's thread per track; they share nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
from av.audio.codeccontext import AudioCodecContext
from av.codec.context import Flags
from av.packet import Packet
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType

from media.rtmp import flv
from media.webrtc.avc import aac_config_body, aac_frame_body, avc_config_body, avc_frame_body
from media.webrtc.clock import TrackClock

__all__ = ["AudioEncoder", "FlvTag", "MediaEncoder", "VideoEncoder", "open_h264_encoder"]

_MS = Fraction(1, 1000)
_AUDIO_RATE = 48_000
_AAC_FRAME = 1024
# Gaps in the audio (lost packets, a muted sender) longer than this are filled with
# silence up to where the frames arrived; shorter ones are closed up. Filled, not left
# as holes: a player stops at a hole in the sound (the browser-camera stall in CI,
# where a loaded ingest lost most of a publish's audio packets).
_AUDIO_GAP_MS = 500
# Longer gaps (a bogus time) move the audio timeline forward instead: no minutes of
# silence are made.
_SILENCE_MAX_MS = 10_000


@dataclass(frozen=True, slots=True)
class FlvTag:
    """An audio (flv.AUDIO) or video (flv.VIDEO) tag body at a time in ms."""

    kind: int
    timestamp: int
    body: bytes


def open_h264_encoder(
    width: int, height: int, time_base: Fraction, preset: str, *, global_header: bool = False
) -> VideoCodecContext:
    """An open low-latency libx264 encoder that makes a keyframe only where its caller
    forces one (an I picture, sent as an IDR): the WHIP encoder cuts segments of one
    length that way, and the WHEP tap keyframes on its own schedule, so both open it
    here. `global_header`: SPS/PPS in extradata rather than in the stream."""
    ctx = av.CodecContext.create("libx264", "w")
    assert isinstance(ctx, VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = width, height, "yuv420p", time_base
    if global_header:
        ctx.flags |= Flags.global_header
    ctx.gop_size = 100_000  # never on its own: scenecut=0, keyint=infinite
    ctx.options = {
        "preset": preset,
        "tune": "zerolatency",
        "forced-idr": "1",
        "x264-params": "scenecut=0:keyint=infinite",
    }
    ctx.open()
    return ctx


class VideoEncoder:
    """Pictures → H.264 (x264), as FLV video tags."""

    def __init__(self, *, keyframe_interval_s: float, preset: str = "veryfast") -> None:
        self._interval_ms = round(keyframe_interval_s * 1000)
        self._preset = preset
        self._ctx: VideoCodecContext | None = None
        self._last_key_ms: int | None = None
        self.frames = 0  # pictures encoded

    @property
    def size(self) -> tuple[int, int] | None:
        return (self._ctx.width, self._ctx.height) if self._ctx else None

    def encode(self, frame: av.VideoFrame, at_ms: int) -> list[FlvTag]:
        """Encode one picture shown at `at_ms`; the tags that came out of the encoder."""
        tags: list[FlvTag] = []
        if self._ctx is None:
            self._ctx = self._open(frame.width, frame.height)
            assert self._ctx.extradata is not None  # global header: SPS/PPS
            tags.append(FlvTag(flv.VIDEO, at_ms, avc_config_body(self._ctx.extradata)))
        ctx = self._ctx
        picture = frame.reformat(ctx.width, ctx.height, "yuv420p")
        picture.pts, picture.time_base = at_ms, _MS
        if self._last_key_ms is None or at_ms - self._last_key_ms >= self._interval_ms:
            picture.pict_type = PictureType.I  # forced: an IDR (forced-idr)
            self._last_key_ms = at_ms
        else:
            picture.pict_type = PictureType.NONE
        self.frames += 1
        return tags + self._tags(ctx.encode(picture))

    def flush(self) -> list[FlvTag]:
        return self._tags(self._ctx.encode(None)) if self._ctx else []

    def _open(self, width: int, height: int) -> VideoCodecContext:
        w, h = max(2, width - width % 2), max(2, height - height % 2)
        # SPS/PPS in extradata, for the avcC record.
        return open_h264_encoder(w, h, _MS, self._preset, global_header=True)

    @staticmethod
    def _tags(packets: list[Packet[Stream]]) -> list[FlvTag]:
        return [
            FlvTag(flv.VIDEO, int(p.pts or 0), avc_frame_body(bytes(p), p.is_keyframe))
            for p in packets
            if p.size
        ]


class AudioEncoder:
    """Sound → AAC 48 kHz stereo, as FLV audio tags, timed by the samples encoded."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=_AUDIO_RATE)
        self._fifo = av.AudioFifo()
        self._ctx: AudioCodecContext | None = None
        self._base_ms: int | None = None  # the time of sample 0 of the AAC stream
        self._samples_in = 0  # samples written to the fifo
        self._samples_out = 0  # samples encoded

    def encode(self, frame: av.AudioFrame, at_ms: int) -> list[FlvTag]:
        """Encode sound that starts at `at_ms`; the tags that came out of the encoder."""
        tags: list[FlvTag] = []
        if self._ctx is None:
            self._ctx = self._open()
            assert self._ctx.extradata is not None  # the AudioSpecificConfig
            tags.append(FlvTag(flv.AUDIO, at_ms, aac_config_body(self._ctx.extradata)))
        gap_ms = at_ms - self._ms(self._samples_in) if self._base_ms is not None else None
        if gap_ms is None or gap_ms > _SILENCE_MAX_MS:
            # Start, or a bogus jump: this sound starts where it arrived.
            self._base_ms = at_ms - self._ms(self._samples_in, base=0)
        elif gap_ms > _AUDIO_GAP_MS:
            self._write(_silence(gap_ms * _AUDIO_RATE // 1000))
        frame.pts = None  # the fifo counts samples itself
        for part in self._resampler.resample(frame):
            self._write(part)
        ctx = self._ctx
        while self._fifo.samples >= _AAC_FRAME:
            chunk = self._fifo.read(_AAC_FRAME)
            assert chunk is not None
            chunk.pts, chunk.time_base = self._samples_out, Fraction(1, _AUDIO_RATE)
            self._samples_out += chunk.samples
            tags += self._tags(ctx.encode(chunk))
        return tags

    def flush(self) -> list[FlvTag]:
        return self._tags(self._ctx.encode(None)) if self._ctx else []

    def _write(self, part: av.AudioFrame) -> None:
        part.pts = None
        self._fifo.write(part)
        self._samples_in += part.samples

    def _ms(self, samples: int, base: int | None = None) -> int:
        start = self._base_ms if base is None else base
        return (start or 0) + samples * 1000 // _AUDIO_RATE

    def _open(self) -> AudioCodecContext:
        ctx = av.CodecContext.create("aac", "w")
        assert isinstance(ctx, AudioCodecContext)
        ctx.sample_rate, ctx.layout, ctx.format = _AUDIO_RATE, "stereo", "fltp"
        ctx.time_base = Fraction(1, _AUDIO_RATE)
        ctx.flags |= Flags.global_header  # the AudioSpecificConfig in extradata
        ctx.open()
        return ctx

    def _tags(self, packets: list[Packet[Stream]]) -> list[FlvTag]:
        # AAC's priming makes the first packets' pts negative: FLV times start at 0.
        return [
            FlvTag(flv.AUDIO, max(0, self._ms(int(p.pts or 0))), aac_frame_body(bytes(p)))
            for p in packets
            if p.size
        ]


def _silence(samples: int) -> av.AudioFrame:
    """`samples` of 48 kHz stereo silence, in the encoder's format."""
    frame = av.AudioFrame(format="fltp", layout="stereo", samples=samples)
    frame.sample_rate = _AUDIO_RATE
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    return frame


class MediaEncoder:
    """A publish's two tracks, from decoded frames and when they arrived, to FLV tags on
    one timeline (see `media.webrtc.clock`)."""

    def __init__(self, origin: float, *, keyframe_interval_s: float, preset: str) -> None:
        self.video_encoder = VideoEncoder(keyframe_interval_s=keyframe_interval_s, preset=preset)
        self.audio_encoder = AudioEncoder()
        self._video_clock = TrackClock(origin, strictly_increasing=True)
        self._audio_clock = TrackClock(origin)

    def video(self, frame: av.VideoFrame, arrived: float) -> list[FlvTag]:
        at = self._video_clock.at(frame.pts, frame.time_base, arrived)
        return self.video_encoder.encode(frame, at)

    def audio(self, frame: av.AudioFrame, arrived: float) -> list[FlvTag]:
        at = self._audio_clock.at(frame.pts, frame.time_base, arrived)
        return self.audio_encoder.encode(frame, at)
