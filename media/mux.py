"""One rendition's output: its video encoder and MPEG-TS muxer, with the shared audio.

Invariants:
- Every stream is configured before the first mux, and the encoder is always flushed
  (`close`); a failed output is `abort`ed and nothing of it is returned.
- Audio packets, encoded once for all renditions, are interleaved by hand up to each
  video packet's dts, so the muxer never waits on a stream.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from fractions import Fraction
from typing import cast

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.packet import Packet
from av.video.frame import VideoFrame
from av.video.reformatter import VideoReformatter
from av.video.stream import VideoStream

from .audio import EncodedAudio
from .demux import TS_TIME_BASE
from .encoders import Encoder, EncoderSettings, default_registry
from .ladder import Rendition

__all__ = ["RenditionOutput", "add_video_stream"]


def add_video_stream(
    container: OutputContainer,
    rendition: Rendition,
    rate: Fraction,
    keyint: int,
    settings: EncoderSettings,
    encoder: Encoder | None = None,
) -> VideoStream:
    """A configured encoder stream for a rendition, on the MPEG-TS clock. Shared with
    the benchmark's single-pass baseline, so both use identical encoder settings.
    Without `encoder`, the process's registry picks (and checks) one."""
    if encoder is None:
        encoder = default_registry().encoder_for(rendition, settings)
    options = encoder.options(rendition, keyint, settings)
    stream = cast(VideoStream, container.add_stream(encoder.name, rate=rate, options=options))
    stream.width, stream.height = rendition.width, rendition.height
    stream.pix_fmt = "yuv420p"
    stream.bit_rate = rendition.video_kbps * 1000
    stream.time_base = TS_TIME_BASE
    stream.codec_context.time_base = TS_TIME_BASE
    stream.codec_context.thread_count = settings.threads
    return stream


class RenditionOutput:
    """One rendition's encoder and MPEG-TS muxer, fed frame by frame."""

    def __init__(
        self,
        rendition: Rendition,
        encoder: Encoder,
        rate: Fraction,
        keyint: int,
        audio: Sequence[EncodedAudio] | None,
        audio_rate: int,
        settings: EncoderSettings,
    ) -> None:
        self.rendition = rendition
        self.buffer = io.BytesIO()
        self.container: OutputContainer = av.open(self.buffer, "w", format="mpegts")
        self.video = add_video_stream(self.container, rendition, rate, keyint, settings, encoder)
        self.audio_packets = list(audio or ())
        self.audio_tb = Fraction(1, audio_rate)
        self.audio_stream: AudioStream | None = None
        if audio is not None:
            # Opened but never fed: it gives the muxer the AAC parameters (and the
            # AudioSpecificConfig) that match the packets encoded once for all outputs.
            self.audio_stream = self.container.add_stream(
                "aac", rate=audio_rate, layout="stereo", bit_rate=rendition.audio_kbps * 1000
            )
        self.reformatter = VideoReformatter()
        self.frames = 0
        self.first_video: bytes | None = None
        self._audio_next = 0

    def encode(self, frame: VideoFrame | None) -> None:
        """Encode one frame (None flushes) and mux what comes out, audio interleaved."""
        for packet in self.video.encode(frame):
            if self.first_video is None:
                self.first_video = bytes(packet)
            self._mux_audio_until(packet.dts * packet.time_base if packet.dts is not None else None)
            self.container.mux(packet)
        if frame is not None:
            self.frames += 1

    def close(self) -> bytes:
        """Flush the encoder and the remaining audio; the MPEG-TS bytes."""
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
