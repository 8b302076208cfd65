"""Transcode one source segment to every rendition of the ladder.

Invariants:
- The source segment is demuxed and decoded once; each decoded frame is scaled (or
  enhanced, for renditions that need upscaling and when a hook is given) and
  encoded for every rendition.
- Frame count: every rendition has exactly the source segment's frames, with the
  source's timestamps (no drops, no duplicates, no retiming), so consecutive
  segments, transcoded independently and in any order, play back seamlessly.
- Each rendition segment is one closed GOP: it starts with an IDR and the encoder's
  keyint is the segment's frame count, with scene-cut keyframes off.
- Audio is decoded, downmixed to stereo and encoded to AAC-LC once per distinct
  audio bitrate, and the same packets are muxed into every rendition.
- Anything wrong with the input (unreadable, corrupt or undecodable packets, fewer
  frames than packets or than the caller expects) raises `CorruptSegmentError`
  before or while encoding; nothing half-made is returned.

Known trade-off of per-segment audio: each segment's AAC encode starts with 1024
samples of encoder priming whose timestamps overlap the previous segment's last
frame (players keep one of them), and the AAC decode of a segment's first frame
lacks the previous frame's overlap. Both are inaudible in practice; a stream that
needs sample-exact audio should copy the source's AAC instead.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.packet import Packet
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.reformatter import Interpolation, VideoReformatter
from av.video.stream import VideoStream

from .ladder import Rendition, hevc_level

__all__ = [
    "CorruptSegmentError",
    "EncoderSettings",
    "FrameHook",
    "RenditionSegment",
    "SegmentTranscoder",
    "add_video_stream",
    "codec_string_from_annexb",
    "encoder_options",
    "sample_frames",
]

# The MPEG-TS clock; decoded frames and encoded packets stay in it, so nothing is
# rounded between source and output.
TS_TIME_BASE = Fraction(1, 90_000)
_ENCODERS = {"h264": "libx264", "hevc": "libx265"}

FrameHook = Callable[[np.ndarray, Rendition], np.ndarray]
"""`hook(frames, rendition) -> frames`: a batch of RGB frames `(N, H, W, 3)` uint8 at
the source size in, the same N frames out (any size; they are scaled to the rendition).
Called only for renditions with `needs_upscale`, e.g. for super-resolution."""


class CorruptSegmentError(ValueError):
    """The segment bytes cannot be transcoded without losing or inventing frames."""


@dataclass(frozen=True, slots=True)
class EncoderSettings:
    """Encoder knobs shared by all renditions. `threads=1` because parallelism comes
    from transcoding many segments at once, one per worker; 0 lets FFmpeg decide."""

    preset: str = "veryfast"
    threads: int = 1
    x264_params: str = ""  # extra `key=value:...` appended to ours
    interpolation: str = "BICUBIC"
    hook_batch: int = 8
    # Stop x265 printing its banner and per-encode summary to stderr.
    x265_log_level: str = "error"


@dataclass(frozen=True, slots=True)
class RenditionSegment:
    """One rendition of one segment. `codecs` is read back from the encoded SPS/VPS."""

    rendition: str
    data: bytes
    start_pts_seconds: float
    duration: float
    frames: int
    width: int
    height: int
    codecs: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class _EncodedAudio:
    data: bytes
    pts: int
    dts: int
    duration: int


class _Output:
    """One rendition's encoder and MPEG-TS muxer, fed frame by frame."""

    def __init__(
        self,
        rendition: Rendition,
        rate: Fraction,
        keyint: int,
        audio: Sequence[_EncodedAudio] | None,
        audio_rate: int,
        settings: EncoderSettings,
    ) -> None:
        self.rendition = rendition
        self.buffer = io.BytesIO()
        self.container: OutputContainer = av.open(self.buffer, "w", format="mpegts")
        self.video = add_video_stream(self.container, rendition, rate, keyint, settings)
        self.audio_packets = list(audio or ())
        self.audio_tb = Fraction(1, audio_rate)
        self.audio_stream: AudioStream | None = None
        if audio is not None:
            # Opened but never fed: it gives the muxer the AAC parameters (and the
            # AudioSpecificConfig) that match the packets encoded once in `transcode`.
            self.audio_stream = self.container.add_stream(
                "aac", rate=audio_rate, layout="stereo", bit_rate=rendition.audio_kbps * 1000
            )
        self.reformatter = VideoReformatter()
        self.frames = 0
        self.first_video: bytes | None = None
        self._audio_next = 0

    def encode(self, frame: VideoFrame | None) -> None:
        for packet in self.video.encode(frame):
            if self.first_video is None:
                self.first_video = bytes(packet)
            self._mux_audio_until(packet.dts * packet.time_base if packet.dts is not None else None)
            self.container.mux(packet)
        if frame is not None:
            self.frames += 1

    def close(self) -> bytes:
        self.encode(None)
        self._mux_audio_until(None)
        self.container.close()
        return self.buffer.getvalue()

    def abort(self) -> None:
        # Closing a half-written muxer after an error: there is nothing to save.
        with contextlib.suppress(av.FFmpegError):
            self.container.close()

    def _mux_audio_until(self, until: Fraction | None) -> None:
        """Interleave audio by hand, so the muxer never waits on a stream."""
        if self.audio_stream is None:
            return
        while self._audio_next < len(self.audio_packets):
            a = self.audio_packets[self._audio_next]
            if until is not None and a.dts * self.audio_tb > until:
                return
            packet = Packet(a.data)
            packet.pts, packet.dts, packet.duration = a.pts, a.dts, a.duration
            packet.time_base = self.audio_tb
            packet.stream = self.audio_stream
            self.container.mux(packet)
            self._audio_next += 1


def encoder_options(
    rendition: Rendition, keyint: int, settings: EncoderSettings
) -> tuple[str, dict[str, str]]:
    """The FFmpeg encoder and its options for a rendition: preset, High/Main profile,
    the rendition's level (so the SPS matches `Rendition.codecs`), VBV peak rate,
    and one keyframe every `keyint` frames with scene-cut keyframes off."""
    r = rendition
    options = {
        "preset": settings.preset,
        "profile": "main" if r.codec == "hevc" else "high",
        "maxrate": f"{r.maxrate_kbps}k",
        "bufsize": f"{2 * r.video_kbps}k",
    }
    if r.codec == "hevc":
        level, high_tier = hevc_level(r.width, r.height, r.fps, r.maxrate_kbps)
        params = [
            f"keyint={keyint}",
            f"min-keyint={keyint}",
            "scenecut=0",
            f"level-idc={level}",
            "high-tier=1" if high_tier else "no-high-tier=1",
            f"log-level={settings.x265_log_level}",
        ]
        if settings.threads:
            params += [f"pools={settings.threads}", f"frame-threads={settings.threads}"]
        options["x265-params"] = ":".join(params)
    else:
        params = [f"keyint={keyint}", "scenecut=0", f"level={r.level}"]
        if settings.x264_params:
            params.append(settings.x264_params)
        options["x264-params"] = ":".join(params)
    return _ENCODERS[r.codec], options


def add_video_stream(
    container: OutputContainer,
    rendition: Rendition,
    rate: Fraction,
    keyint: int,
    settings: EncoderSettings,
) -> VideoStream:
    """A configured encoder stream for a rendition, on the MPEG-TS clock. Shared with
    the benchmark's single-pass baseline, so both use identical encoder settings."""
    encoder, options = encoder_options(rendition, keyint, settings)
    stream = cast(VideoStream, container.add_stream(encoder, rate=rate, options=options))
    stream.width, stream.height = rendition.width, rendition.height
    stream.pix_fmt = "yuv420p"
    stream.bit_rate = rendition.video_kbps * 1000
    stream.time_base = TS_TIME_BASE
    stream.codec_context.time_base = TS_TIME_BASE
    stream.codec_context.thread_count = settings.threads
    return stream


class SegmentTranscoder:
    """Stateless between calls: safe to reuse for segments of any stream, in any order."""

    def __init__(self, settings: EncoderSettings | None = None) -> None:
        self.settings = settings or EncoderSettings()
        try:
            self._interpolation = Interpolation[self.settings.interpolation.upper()]
        except KeyError:
            raise ValueError(f"unknown interpolation {self.settings.interpolation!r}") from None

    def transcode(
        self,
        segment_bytes: bytes,
        renditions: Sequence[Rendition],
        frame_hook: FrameHook | None = None,
        *,
        expected_frames: int | None = None,
    ) -> dict[str, RenditionSegment]:
        """Every rendition of one MPEG-TS source segment, keyed by rendition name.

        `expected_frames` (the `SourceSegment.frames` the segmenter counted) turns a
        truncated segment that still decodes into a `CorruptSegmentError`.
        """
        if not renditions:
            raise ValueError("no renditions to transcode to")
        names = [r.name for r in renditions]
        if len(set(names)) != len(names):
            raise ValueError(f"rendition names must be unique, got {names}")
        source = _demux(segment_bytes)
        if expected_frames is not None and len(source.video) != expected_frames:
            raise CorruptSegmentError(
                f"segment holds {len(source.video)} video frames, expected {expected_frames}"
            )
        audio_by_kbps = (
            {
                kbps: self._encode_audio(source, kbps)
                for kbps in sorted({r.audio_kbps for r in renditions})
            }
            if source.audio
            else {}
        )
        outputs = [
            _Output(
                r,
                source.rate,
                len(source.video),
                audio_by_kbps.get(r.audio_kbps) if source.audio else None,
                source.audio_rate,
                self.settings,
            )
            for r in renditions
        ]
        try:
            first_pts, last_pts = self._encode_video(source, outputs, frame_hook)
            encoded = {o.rendition.name: (o, o.close()) for o in outputs}
        except BaseException:
            for o in outputs:
                o.abort()
            raise
        duration = float((last_pts - first_pts) * TS_TIME_BASE + 1 / source.rate)
        result: dict[str, RenditionSegment] = {}
        for name, (o, data) in encoded.items():
            if o.frames != len(source.video):  # the invariant this module exists for
                raise RuntimeError(f"{name}: encoded {o.frames} of {len(source.video)} frames")
            codecs = codec_string_from_annexb(o.first_video or b"", o.rendition.codec)
            result[name] = RenditionSegment(
                rendition=name,
                data=data,
                start_pts_seconds=float(first_pts * TS_TIME_BASE),
                duration=duration,
                frames=o.frames,
                width=o.rendition.width,
                height=o.rendition.height,
                codecs=f"{codecs},mp4a.40.2" if source.audio else codecs,
            )
        return result

    # --- video ---------------------------------------------------------------------------

    def _encode_video(
        self, source: _Source, outputs: list[_Output], hook: FrameHook | None
    ) -> tuple[int, int]:
        direct = [o for o in outputs if not (hook and o.rendition.needs_upscale)]
        hooked = [o for o in outputs if hook and o.rendition.needs_upscale]
        batch: list[VideoFrame] = []
        step = max(1, round(1 / (source.rate * TS_TIME_BASE)))
        first_pts: int | None = None
        last_pts: int | None = None
        decoded = 0
        codec = cast(VideoCodecContext, av.CodecContext.create(source.codec, "r"))
        codec.extradata = source.extradata
        codec.thread_count = self.settings.threads
        for packet in [*source.video, None]:
            try:
                frames = codec.decode(packet)
            except av.FFmpegError as e:
                raise CorruptSegmentError(f"video decode failed: {e}") from e
            for frame in frames:
                if frame.is_corrupt:
                    raise CorruptSegmentError(f"frame {decoded} decoded with errors")
                decoded += 1
                # Keep the source's clock; invent a timestamp only where the decoder has
                # none, and never let it go backwards (the encoder would reject it).
                pts = frame.pts if frame.pts is not None else (last_pts or 0) + step
                if last_pts is not None and pts <= last_pts:
                    pts = last_pts + 1
                first_pts = pts if first_pts is None else first_pts
                last_pts = pts
                frame.pts, frame.time_base = pts, TS_TIME_BASE
                for o in direct:
                    o.encode(self._scale(o, frame))
                if hooked:
                    batch.append(frame)
                    if len(batch) >= self.settings.hook_batch:
                        self._run_hook(batch, hooked, hook)
                        batch = []
        if batch:
            self._run_hook(batch, hooked, hook)
        if decoded != len(source.video) or first_pts is None or last_pts is None:
            raise CorruptSegmentError(
                f"decoded {decoded} frames from {len(source.video)} video packets"
            )
        return first_pts, last_pts

    def _scale(self, o: _Output, frame: VideoFrame) -> VideoFrame:
        r = o.rendition
        out = o.reformatter.reformat(
            frame,
            r.width,
            r.height,
            "yuv420p",
            interpolation=self._interpolation,
            threads=self.settings.threads,
        )
        out.pts, out.time_base = frame.pts, frame.time_base
        return out

    def _run_hook(
        self, batch: list[VideoFrame], outputs: list[_Output], hook: FrameHook | None
    ) -> None:
        assert hook is not None
        rgb = np.stack([f.to_ndarray(format="rgb24") for f in batch])
        for o in outputs:
            enhanced = np.asarray(hook(rgb, o.rendition))
            if enhanced.ndim != 4 or len(enhanced) != len(batch) or enhanced.shape[-1] != 3:
                raise ValueError(
                    f"frame_hook must return {len(batch)} RGB frames (N, H, W, 3) for "
                    f"{o.rendition.name}, got shape {enhanced.shape}"
                )
            for src, arr in zip(batch, enhanced, strict=True):
                frame = VideoFrame.from_ndarray(np.ascontiguousarray(arr, dtype=np.uint8), "rgb24")
                frame.pts, frame.time_base = src.pts, src.time_base
                o.encode(self._scale(o, frame))

    # --- audio ---------------------------------------------------------------------------

    def _encode_audio(self, source: _Source, kbps: int) -> list[_EncodedAudio]:
        rate = source.audio_rate
        decoder = cast(AudioCodecContext, av.CodecContext.create(source.audio_codec, "r"))
        decoder.extradata = source.audio_extradata
        decoder.sample_rate = rate
        encoder = cast(AudioCodecContext, av.CodecContext.create("aac", "w"))
        encoder.sample_rate, encoder.layout, encoder.format = rate, "stereo", "fltp"
        encoder.bit_rate = kbps * 1000
        encoder.time_base = Fraction(1, rate)
        encoder.open()
        resampler = AudioResampler(format="fltp", layout="stereo", rate=rate, frame_size=1024)
        out: list[_EncodedAudio] = []

        def encode(frames: Iterable[AudioFrame | None]) -> None:
            for frame in frames:
                for p in encoder.encode(frame):
                    # The AAC encoder times every packet; dts == pts for audio.
                    pts = p.pts if p.pts is not None else 0
                    dts = p.dts if p.dts is not None else pts
                    out.append(_EncodedAudio(bytes(p), pts, dts, p.duration or 1024))

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
                encode(resampler.resample(frame))
        encode(resampler.resample(None))
        encode([None])
        return out


@dataclass(slots=True)
class _Source:
    """A demuxed segment. The packets outlive their container, so only packet fields
    (data, pts, dts, time_base, flags) may be used, never `packet.stream`."""

    codec: str
    extradata: bytes | None
    rate: Fraction
    video: list[Packet]
    audio: list[Packet]
    audio_rate: int
    audio_codec: str
    audio_extradata: bytes | None


def _demux(data: bytes) -> _Source:
    """All packets of the segment's first video and audio streams, checked."""
    # MPEG-TS is a sequence of 188-byte packets: anything else was cut short (or
    # padded), and the demuxer would quietly return the frames before the cut.
    if len(data) % 188:
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
        video: list[Packet] = []
        audio: list[Packet] = []
        try:
            for packet in container.demux([vs] + ([a_s] if a_s else [])):
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
        rate = vs.guessed_rate or vs.average_rate or Fraction(30)
        return _Source(
            codec=vs.codec_context.name,
            extradata=vs.codec_context.extradata,
            rate=Fraction(rate),
            video=video,
            audio=audio,
            audio_rate=a_s.codec_context.sample_rate if a_s else 48_000,
            audio_codec=a_s.codec_context.name if a_s else "",
            audio_extradata=a_s.codec_context.extradata if a_s else None,
        )


def sample_frames(segment_bytes: bytes, per_second: float = 1.0) -> list[np.ndarray]:
    """RGB frames `(H, W, 3)` uint8 at `per_second` from a segment, for moderation.

    The first frame is always taken, then the first frame at or after each further
    1/per_second; decoding is needed anyway (only keyframes stand alone).
    """
    if per_second <= 0:
        raise ValueError(f"per_second must be positive, got {per_second}")
    source = _demux(segment_bytes)
    codec = cast(VideoCodecContext, av.CodecContext.create(source.codec, "r"))
    codec.extradata = source.extradata
    interval = Fraction(1) / Fraction(per_second).limit_denominator(1000)
    out: list[np.ndarray] = []
    due: Fraction | None = None
    for packet in [*source.video, None]:
        try:
            frames = codec.decode(packet)
        except av.FFmpegError as e:
            raise CorruptSegmentError(f"video decode failed: {e}") from e
        for frame in frames:
            if frame.pts is None:
                continue
            t = frame.pts * TS_TIME_BASE
            if due is None or t >= due:
                out.append(frame.to_ndarray(format="rgb24"))
                due = (t if due is None else due) + interval
    return out


# --- RFC 6381 codec strings from the bitstream -----------------------------------------


def codec_string_from_annexb(data: bytes, codec: str = "h264") -> str:
    """`avc1.PPCCLL` or `hvc1.…` from the SPS in Annex B bytes (the first packet of an
    MPEG-TS segment). Raises ValueError when there is no SPS."""
    for nal in _nal_units(data):
        if codec == "h264" and nal and nal[0] & 0x1F == 7:
            rbsp = _unescape(nal[1:4])
            return f"avc1.{rbsp[0]:02x}{rbsp[1]:02x}{rbsp[2]:02x}"
        if codec == "hevc" and len(nal) > 2 and (nal[0] >> 1) & 0x3F == 33:
            rbsp = _unescape(nal[2:])
            return _hevc_string(rbsp[1:13])  # after sps_video_parameter_set_id etc.
    raise ValueError(f"no {codec} SPS in the data")


def _nal_units(data: bytes) -> list[bytes]:
    units, i = [], data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        j = data.find(b"\x00\x00\x01", start)
        end = len(data) if j < 0 else j
        units.append(data[start:end].rstrip(b"\x00"))
        i = j
    return units


def _unescape(b: bytes) -> bytes:
    """Drop emulation-prevention bytes (00 00 03 -> 00 00)."""
    return b.replace(b"\x00\x00\x03", b"\x00\x00")


def _hevc_string(ptl: bytes) -> str:
    """ISO/IEC 14496-15 Annex E from the 12-byte general profile_tier_level."""
    space = "ABC"[(ptl[0] >> 6) - 1] if ptl[0] >> 6 else ""
    tier = "H" if ptl[0] & 0x20 else "L"
    profile = ptl[0] & 0x1F
    compat = int.from_bytes(ptl[1:5], "big")
    compat_rev = int(f"{compat:032b}"[::-1], 2)
    constraints = list(ptl[5:11])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    level = ptl[11]
    tail = "".join(f".{c:X}" for c in constraints)
    return f"hvc1.{space}{profile}.{compat_rev:X}.{tier}{level}{tail}"
