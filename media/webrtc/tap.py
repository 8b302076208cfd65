"""The segmenter's packets made WebRTC-ready, once per stream, into a `PacketHub`.

`SourceTap` is the `Segmenter(on_packet=...)` callback (it runs in the segmenter's
thread). It turns what an RTMP/WHIP publish carries into what a browser's WebRTC
stack decodes:

- H.264 passes through, not re-encoded: FLV's length-prefixed NAL units become Annex
  B (what aiortc's H.264 packetizer splits), and SPS/PPS from the avcC record go in
  front of every keyframe, so a viewer can start at any keyframe. The profile is the
  source's (often Main or High): the answer's SDP says constrained baseline, the one
  profile aiortc negotiates, and browsers decode what arrives regardless.
- WebRTC has no B-frame reordering (pictures are sent and rendered in RTP order), so
  once a source shows reordered pictures (a composition offset, or a pts below an
  earlier one: in practice its first picture already), video switches
  for good to `VideoReencoder`: decoded and encoded once per stream with x264
  `zerolatency` (no B-frames) at `fallback_height`, fanned out like passthrough; a
  viewer that joins with no cached GOP to start from (`PacketHub.want_keyframe`)
  gets a keyframe on the next picture. Where the stream has a streaming encoder
  (LL-HLS), its lowest rung feeds the hub's video instead (`rung_fed`,
  `media.webrtc.rung`) and the tap re-encodes nothing.
- Any other codec (HEVC, AV1, …: WHEP here sends H.264 only, and aiortc has no H.265)
  is not forwarded: the streaming encoder's lowest rung is the video where the stream
  has one (`rung_fed`), else there is none (`blocked_codec`, and the tap's owner refuses
  viewers). The tap does not transcode them itself: decoding HEVC/AV1 and encoding
  H.264 is the streaming encoder's job, done once for LL-HLS and WebRTC alike.
- AAC becomes Opus (48 kHz stereo, 20 ms frames), once per stream, not per viewer.

Invariants:
- Nothing is done while the hub has no subscribers (the audio encoder re-anchors
  when viewers come back) but noting the source's video codec (`video_codec`), which
  an offer's answer depends on; a packet that cannot be converted is counted, never
  raised into the segmenter.
- Video and audio keep the stream timeline's times, so a viewer's tracks stay in sync.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction

import av
from av.audio.codeccontext import AudioCodecContext
from av.packet import Packet
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType

from media.parameter_sets import ParameterSets
from media.webrtc.frames import open_h264_encoder
from media.webrtc.hub import MediaPacket, PacketHub

__all__ = ["OpusTranscoder", "SourceTap", "VideoReencoder", "annexb_picture", "avcc_to_annexb"]

log = logging.getLogger(__name__)

_START = b"\x00\x00\x00\x01"
_SPS = 7
_OPUS_RATE = 48_000
_OPUS_FRAME = 960  # 20 ms
_OPUS_TB = Fraction(1, _OPUS_RATE)
_AUDIO_GAP = _OPUS_RATE // 2  # a jump larger than 0.5 s re-anchors the Opus timeline


def avcc_to_annexb(data: bytes, length_size: int = 4) -> bytes:
    """Length-prefixed NAL units (FLV/MP4) as an Annex B byte stream; a truncated last
    unit is dropped."""
    out, i = bytearray(), 0
    while i + length_size <= len(data):
        size = int.from_bytes(data[i : i + length_size], "big")
        nal = data[i + length_size : i + length_size + size]
        if size == 0 or len(nal) != size:
            break
        out += _START + nal
        i += length_size + size
    return bytes(out)


def annexb_picture(data: bytes, length_size: int, parameter_sets: bytes, keyframe: bool) -> bytes:
    """One AVCC picture as Annex B, `parameter_sets` (Annex B SPS/PPS) in front of a
    keyframe that does not carry its own, so a viewer can start at any keyframe."""
    out = avcc_to_annexb(data, length_size)
    return parameter_sets + out if keyframe and not _has_sps(out) else out


class OpusTranscoder:
    """AAC packets (any rate and layout) → Opus frames of 20 ms at 48 kHz stereo."""

    def __init__(self, bit_rate: int = 96_000) -> None:
        self._bit_rate = bit_rate
        self._decoder: AudioCodecContext | None = None
        self._encoder: AudioCodecContext | None = None
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=_OPUS_RATE)
        self._fifo = av.AudioFifo()
        self._next: int | None = None  # 48 kHz pts of the fifo's first sample
        self._extradata: bytes | None = None

    def reset(self) -> None:
        """Forget the timeline (nobody listened for a while): the next packet re-anchors."""
        self._fifo = av.AudioFifo()
        self._next = None

    def transcode(self, packet: Packet[Stream]) -> list[MediaPacket]:
        extradata = packet.stream.codec_context.extradata
        if self._decoder is None or extradata != self._extradata:  # a new publish's encoder
            self._extradata = extradata
            self._decoder, self._encoder = self._open(extradata)
        assert self._encoder is not None and packet.pts is not None and packet.time_base
        at = round(packet.pts * packet.time_base * _OPUS_RATE)
        expected = None if self._next is None else self._next + self._fifo.samples
        if expected is None or abs(at - expected) > _AUDIO_GAP:
            self.reset()
            self._next = at
        out: list[MediaPacket] = []
        for frame in self._decoder.decode(packet):
            frame.pts = None
            for part in self._resampler.resample(frame):
                part.pts = None
                self._fifo.write(part)
        while self._fifo.samples >= _OPUS_FRAME:
            chunk = self._fifo.read(_OPUS_FRAME)
            assert chunk is not None and self._next is not None
            chunk.pts, chunk.time_base = self._next, _OPUS_TB
            self._next += _OPUS_FRAME
            out += [
                MediaPacket("audio", bytes(p), int(p.pts or 0), _OPUS_TB)
                for p in self._encoder.encode(chunk)
                if p.size
            ]
        return out

    def _open(self, extradata: bytes | None) -> tuple[AudioCodecContext, AudioCodecContext]:
        decoder = av.CodecContext.create("aac", "r")
        assert isinstance(decoder, AudioCodecContext)
        if extradata:
            decoder.extradata = extradata
        encoder = av.CodecContext.create("libopus", "w")
        assert isinstance(encoder, AudioCodecContext)
        encoder.sample_rate, encoder.layout, encoder.format = _OPUS_RATE, "stereo", "s16"
        encoder.bit_rate = self._bit_rate
        encoder.time_base = _OPUS_TB
        encoder.options = {"application": "lowdelay", "frame_duration": "20"}
        encoder.open()
        return decoder, encoder


class VideoReencoder:
    """Source H.264 (with B-frames) → decoded in presentation order → x264
    `zerolatency` at `height` lines, SPS/PPS in band before every IDR (Annex B)."""

    def __init__(
        self,
        height: int,
        keyframe_interval_s: float,
        preset: str,
        keyframe_wanted: Callable[[], bool] | None = None,
    ) -> None:
        self._height = height
        self._interval = keyframe_interval_s
        self._preset = preset
        self._wanted = keyframe_wanted  # asked before each picture: a viewer joined
        self._decoder: VideoCodecContext | None = None
        self._encoder: VideoCodecContext | None = None
        self._last_key: float | None = None
        self._tb = Fraction(1, 1000)

    def encode(self, packet: Packet[Stream]) -> list[MediaPacket]:
        if self._decoder is None and not packet.is_keyframe:
            return []  # decoding starts at a keyframe: nothing before it decodes
        if self._decoder is None:
            decoder = av.CodecContext.create("h264", "r")
            assert isinstance(decoder, VideoCodecContext)
            self._decoder = decoder
            decoder.extradata = packet.stream.codec_context.extradata
            self._tb = packet.time_base or self._tb
        out: list[MediaPacket] = []
        for frame in self._decoder.decode(packet):
            out += self._encode(frame)
        return out

    def _encode(self, frame: av.VideoFrame) -> list[MediaPacket]:
        if self._encoder is None:
            self._encoder = self._open(frame.width, frame.height)
        ctx = self._encoder
        at = float((frame.pts or 0) * self._tb)
        picture = frame.reformat(ctx.width, ctx.height, "yuv420p")
        picture.pts, picture.time_base = frame.pts, self._tb
        wanted = self._wanted() if self._wanted is not None else False
        due = wanted or self._last_key is None or at - self._last_key >= self._interval
        picture.pict_type = PictureType.I if due else PictureType.NONE
        if due:
            self._last_key = at
        return [
            MediaPacket("video", bytes(p), int(p.pts or 0), self._tb, p.is_keyframe)
            for p in ctx.encode(picture)
            if p.size
        ]

    def _open(self, width: int, height: int) -> VideoCodecContext:
        out_h = min(self._height, height) // 2 * 2
        out_w = max(2, round(width * out_h / height) // 2 * 2)
        return open_h264_encoder(out_w, out_h, self._tb, self._preset)  # keyframes: `_encode`


class SourceTap:
    """`Segmenter(on_packet=SourceTap(hub))`: see module docstring."""

    def __init__(
        self,
        hub: PacketHub,
        *,
        fallback_height: int = 360,
        keyframe_interval_s: float = 2.0,
        preset: str = "veryfast",
    ) -> None:
        self._hub = hub
        self._audio = OpusTranscoder()
        self._fallback = (fallback_height, keyframe_interval_s, preset, hub.want_keyframe)
        self._reencoder = VideoReencoder(*self._fallback)
        self._params: ParameterSets | None = None
        self._extradata: bytes | None = None
        self._params_annexb = b""
        self._max_pts: int | None = None
        self._listening = False
        self.video_codec: str | None = None  # the source's, as of its latest video packet
        self.reencoding = False  # the source has B-frames: video is re-encoded
        self.rung_fed = False  # ... unless an LL rung feeds the hub's video (set by its owner)
        self.video_skipped = 0  # not H.264, and no rung to send instead
        self.errors = 0

    @property
    def needs_rung(self) -> bool:
        """Whether the source's video cannot go to viewers as it is (B-frames, or not
        H.264): the LL rung's pictures are the hub's video then, where it has one."""
        return self.reencoding or self.video_codec not in (None, "h264")

    @property
    def blocked_codec(self) -> str | None:
        """The source's video codec when viewers get no video from it: neither H.264
        nor fed by an LL rung. None otherwise, and before its first video packet."""
        codec = self.video_codec
        return None if self.rung_fed or codec in (None, "h264") else codec

    def __call__(self, packet: Packet[Stream]) -> None:
        stream = packet.stream
        if stream is not None and stream.type == "video":
            self.video_codec = stream.codec_context.name  # a reconnect may change it
        if not self._hub.has_subscribers:
            self._listening = False
            return
        if not self._listening:  # viewers (back): fresh audio timeline, decoding from a key
            self._listening = True
            self._audio.reset()
            self._reencoder = VideoReencoder(*self._fallback)
        try:
            for out in self._convert(packet):
                self._hub.publish(out)
        except (av.FFmpegError, ValueError, AssertionError) as e:
            self.errors += 1
            if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
                log.warning(
                    "whep tap: %s packet not converted (%d so far): %s",
                    packet.stream.type,
                    self.errors,
                    e,
                )

    def _convert(self, packet: Packet[Stream]) -> list[MediaPacket]:
        if packet.pts is None or packet.time_base is None:
            return []
        kind = packet.stream.type
        if kind == "audio":
            aac = packet.stream.codec_context.name == "aac"
            return self._audio.transcode(packet) if aac else []
        if kind != "video":
            return []
        if packet.stream.codec_context.name != "h264":  # the rung's pictures, or none
            self.video_skipped += not self.rung_fed
            return []
        if self._reordered(packet.pts, packet.dts) and not self.reencoding:
            log.info("whep tap: the source has B-frames: its video cannot pass through")
            self.reencoding = True
        if self.reencoding:
            if self.rung_fed:
                return []  # the streaming encoder's lowest rung is the hub's video
            if packet.stream.codec_context.extradata != self._extradata:  # a new publish
                self._extradata = packet.stream.codec_context.extradata
                self._reencoder = VideoReencoder(*self._fallback)
            return self._reencoder.encode(packet)
        return [self._passthrough(packet)]

    def _reordered(self, pts: int, dts: int | None) -> bool:
        """B-frames: a composition offset (FLV's cts, on the first picture already), or a
        picture shown before one sent earlier."""
        reordered = (dts is not None and dts != pts) or (
            self._max_pts is not None and pts < self._max_pts
        )
        self._max_pts = pts if self._max_pts is None else max(pts, self._max_pts)
        return reordered

    def _passthrough(self, packet: Packet[Stream]) -> MediaPacket:
        extradata = packet.stream.codec_context.extradata
        if self._params is None or extradata != self._extradata:  # a new publish's encoder
            self._extradata = extradata
            self._params = ParameterSets.from_avcc(extradata)
            self._params_annexb = avcc_to_annexb(self._params.data, self._params.nal_length_size)
        keyframe = bool(packet.is_keyframe)
        size = self._params.nal_length_size
        data = annexb_picture(bytes(packet), size, self._params_annexb, keyframe)
        assert packet.pts is not None and packet.time_base is not None
        return MediaPacket("video", data, packet.pts, packet.time_base, keyframe)


def _has_sps(annexb: bytes) -> bool:
    return any(nal and nal[0] & 0x1F == _SPS for nal in annexb.split(_START))
