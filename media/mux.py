"""One rendition's output: its video encoder and muxer (MPEG-TS, or fMP4 for HDR
renditions), with the shared audio.

Invariants:
- Every stream is configured before the first mux, and the encoder is always flushed
  (`close`); a failed output is `abort`ed and nothing of it is returned.
- The video stream is opened at the first frame, when the source's colour is known
  (`media.hdr`): an HDR rendition gets 10-bit HEVC with the source's transfer and
  mastering metadata, an SDR rendition of an HDR source is tagged BT.709.
- Frames reach the encoder in the rendition's range: `prepare` maps each source frame
  through the segment's shared `ColourMapper` before it is scaled.
- Audio packets, encoded once for all renditions, are interleaved by hand up to each
  video packet's dts, so the muxer never waits on a stream.
- An fMP4 rendition returns its media segment from `close` and its init segment in
  `init`; both are on the stream timeline (`media.cmaf`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, cast

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.packet import Packet
from av.video.frame import VideoFrame
from av.video.reformatter import VideoReformatter
from av.video.stream import VideoStream

from .audio import EncodedAudio
from .cmaf import FragmentedOutput
from .colour import RANGE_LIMITED, colour_tags
from .demux import TS_TIME_BASE
from .encoders import Encoder, EncoderSettings, default_registry
from .hdr import (
    ColourMapper,
    HdrMetadata,
    SourceColour,
    VideoRange,
    pix_fmt_for,
    uses_fmp4,
    x265_colour_params,
)
from .ladder import Rendition

__all__ = ["RenditionOutput", "add_video_stream"]


def add_video_stream(
    container: OutputContainer,
    rendition: Rendition,
    rate: Fraction,
    keyint: int,
    settings: EncoderSettings,
    encoder: Encoder | None = None,
    source: SourceColour | None = None,
) -> VideoStream:
    """A configured encoder stream for a rendition, on the MPEG-TS clock. Shared with
    the benchmark's single-pass baseline, so both use identical encoder settings.
    Without `encoder`, the process's registry picks (and checks) one. `source` (the
    source's colour) decides the colour signalling; None: SDR."""
    if encoder is None:
        encoder = default_registry().encoder_for(rendition, settings)
    options = encoder.options(rendition, keyint, settings)
    target = cast(VideoRange, rendition.video_range)
    if target != "SDR" and "x265-params" in options:
        hdr_source = source is not None and source.range != "SDR"
        metadata = source.metadata if source is not None and hdr_source else HdrMetadata()
        extra = x265_colour_params(target, metadata)
        options["x265-params"] = ":".join([options["x265-params"], *extra])
    stream = cast(VideoStream, container.add_stream(encoder.name, rate=rate, options=options))
    stream.width, stream.height = rendition.width, rendition.height
    stream.pix_fmt = pix_fmt_for(rendition)
    stream.bit_rate = rendition.video_kbps * 1000
    stream.time_base = TS_TIME_BASE
    ctx = stream.codec_context
    ctx.time_base = TS_TIME_BASE
    ctx.thread_count = settings.threads
    if target != "SDR" or (source is not None and source.range != "SDR"):
        ctx.color_primaries, ctx.color_trc, ctx.colorspace = colour_tags(target)
        ctx.color_range = RANGE_LIMITED
    if rendition.codec == "hevc" and container.format.name == "mp4":
        ctx.codec_tag = "hvc1"  # Apple plays HEVC in fMP4 only as hvc1 (parameter sets in the init)
    return stream


class RenditionOutput:
    """One rendition's encoder and muxer, fed frame by frame."""

    def __init__(
        self,
        rendition: Rendition,
        encoder: Encoder,
        rate: Fraction,
        keyint: int,
        audio: Sequence[EncodedAudio] | None,
        audio_rate: int,
        settings: EncoderSettings,
        colour: ColourMapper | None = None,
    ) -> None:
        self.rendition = rendition
        self.pix_fmt = pix_fmt_for(rendition)
        self._encoder, self._rate, self._keyint, self._settings = encoder, rate, keyint, settings
        self._colour = colour or ColourMapper()
        self.buffer = io.BytesIO()
        self._fmp4 = FragmentedOutput() if uses_fmp4(rendition) else None
        self.container: OutputContainer = (
            self._fmp4.container if self._fmp4 else av.open(self.buffer, "w", format="mpegts")
        )
        self.video: VideoStream | None = None  # opened at the first frame
        self.audio_packets = list(audio or ())
        self.audio_tb = Fraction(1, audio_rate)
        self._audio_kbps = rendition.audio_kbps if audio is not None else None
        self.audio_stream: AudioStream | None = None
        self.reformatter = VideoReformatter()
        self.frames = 0
        self.first_video: bytes | None = None
        self.init: bytes | None = None  # fMP4 only, after `close`
        self._audio_next = 0

    def prepare(self, frame: VideoFrame) -> VideoFrame:
        """A source frame in this rendition's range (mapped once per segment and range)."""
        return self._colour.map(frame, cast(VideoRange, self.rendition.video_range))

    def encode(self, frame: VideoFrame | None) -> None:
        """Encode one frame (None flushes) and mux what comes out, audio interleaved."""
        video = self._open()
        for packet in video.encode(frame):
            if self.first_video is None:
                # fMP4: the parameter sets are in the extradata (global header), not in-band.
                self.first_video = (video.codec_context.extradata or b"") + bytes(packet)
            self._mux_audio_until(packet.dts * packet.time_base if packet.dts is not None else None)
            self._mux(packet)
        if frame is not None:
            self.frames += 1

    def close(self) -> bytes:
        """Flush the encoder and the remaining audio; the segment's bytes (MPEG-TS, or
        the fMP4 media segment with `init` set)."""
        self.encode(None)
        self._mux_audio_until(None)
        if self._fmp4 is not None:
            segment = self._fmp4.finish()
            self.init = segment.init
            return segment.media
        self.container.close()
        return self.buffer.getvalue()

    def abort(self) -> None:
        # Closing a half-written muxer after an error: there is nothing to save.
        with contextlib.suppress(av.FFmpegError):
            self.container.close()

    def _open(self) -> VideoStream:
        """The video stream (and then the audio one), added at the first frame."""
        if self.video is None:
            self.video = add_video_stream(
                self.container,
                self.rendition,
                self._rate,
                self._keyint,
                self._settings,
                self._encoder,
                self._colour.source,
            )
            if self._audio_kbps is not None:
                # Opened but never fed: it gives the muxer the AAC parameters (and the
                # AudioSpecificConfig) that match the packets encoded once for all outputs.
                self.audio_stream = self.container.add_stream(
                    "aac",
                    rate=int(1 / self.audio_tb),
                    layout="stereo",
                    bit_rate=self._audio_kbps * 1000,
                )
        return self.video

    def _mux(self, packet: Packet[Any]) -> None:
        if self._fmp4 is not None:
            self._fmp4.mux(packet)
        else:
            self.container.mux(packet)

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
            self._mux(packet)
            self._audio_next += 1
