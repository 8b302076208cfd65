"""A live stream's audio for its LL renditions: decoded once, downmixed to stereo and
encoded once to AAC-LC, its packets shared by every LL rendition's parts.

Invariants:
- Packets are on the `1/rate` clock of the source's own sample rate (no resampling of
  the rate), at timeline times: `pts / rate` seconds is the timeline time, as the
  video's `pts / 90000`.
- Samples are numbered from 0 for the input; each rendition takes those added since
  its previous part (`take`), so every packet is in exactly one part of each, and
  `trim` forgets those every rendition has taken.
- Timestamps are continuous: a decoded frame within `_JITTER` of where the previous
  one ended is put exactly there (FLV's millisecond timestamps jitter by up to a
  millisecond; the encoder would carry that into the output); further off, it is a
  real gap or overlap and keeps its own time.
- Packets before timeline 0 (the encoder's priming packet of a stream that starts at
  0) are dropped: a `tfdt` cannot be negative.
- A packet the decoder refuses is skipped (counted): the video goes on; the gap shows
  in the timestamps, not as shifted audio.
"""

from __future__ import annotations

import contextlib
import logging
from fractions import Fraction
from typing import cast

import av
from av.audio.codeccontext import AudioCodecContext
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.codec.context import CodecContext
from av.packet import Packet
from av.stream import Stream

from media.audio import AAC_FRAME

from .fmp4 import AudioSample, Sink

__all__ = ["LiveAudio"]

log = logging.getLogger(__name__)


_JITTER = 0.005  # seconds a decoded frame may be off its predecessor's end


class LiveAudio:
    """One input's audio: `push` source packets, `take` AAC samples; `init` is an audio-only
    fMP4 init segment whose track `media.llhls.fmp4.with_audio_track` borrows.
    Not thread-safe: one encoder thread pushes and takes."""

    def __init__(self, rate: int, kbps: int) -> None:
        self.rate = rate
        sink = Sink()
        # The muxer is here only for the init segment (esds from the encoder's config);
        # packets never go through it (fmp4.with_audio puts them into the parts).
        self._container = av.open(sink, "w", format="mp4", options={"movflags": "empty_moov"})
        self._stream: AudioStream = self._container.add_stream("aac", rate=rate)
        ctx = self._stream.codec_context
        ctx.layout, ctx.format, ctx.bit_rate = "stereo", "fltp", kbps * 1000
        ctx.time_base = Fraction(1, rate)
        self._container.start_encoding()
        self.init = sink.take()
        self._resampler = AudioResampler(
            format="fltp", layout="stereo", rate=rate, frame_size=AAC_FRAME
        )
        self._decoder: AudioCodecContext | None = None
        self._next: int | None = None  # where the previous decoded frame ended
        self._samples: list[AudioSample] = []
        self._first = 0  # the number of `_samples[0]`
        self.decode_errors = 0
        # Set to a list by a caller that also wants every packet (`media.llhls.classic`).
        self.history: list[AudioSample] | None = None

    def push(self, codec: str, extradata: bytes | None, packet: Packet[Stream]) -> None:
        """A source audio packet whose pts/dts/time_base are on the timeline."""
        if self._decoder is None:
            self._decoder = cast(AudioCodecContext, CodecContext.create(codec, "r"))
            if extradata:
                self._decoder.extradata = extradata
        try:
            frames = self._decoder.decode(packet)
        except av.FFmpegError as e:
            self.decode_errors += 1
            log.debug("live audio: undecodable packet: %s", e)
            return
        for frame in frames:
            if frame.pts is None or frame.time_base is None:
                continue
            frame.pts = self._on_clock(round(frame.pts * frame.time_base * self.rate))
            frame.time_base = Fraction(1, self.rate)
            self._next = frame.pts + round(frame.samples * self.rate / frame.sample_rate)
            for out in self._resampler.resample(frame):
                self._encode(out)

    def _on_clock(self, pts: int) -> int:
        """`pts`, or where the previous frame ended if it is only jitter away."""
        if self._next is not None and abs(pts - self._next) <= _JITTER * self.rate:
            return self._next
        return pts

    def flush(self) -> None:
        """The input ended: what the resampler and the encoder still hold."""
        for out in self._resampler.resample(None):
            self._encode(out)
        self._encode(None)

    def take(self, start: int) -> tuple[list[AudioSample], int]:
        """The samples numbered from `start` on, and the number after them."""
        end = self._first + len(self._samples)
        return self._samples[max(start - self._first, 0) :], end

    def trim(self, upto: int) -> None:
        """Forget the samples numbered below `upto` (every rendition has them)."""
        drop = upto - self._first
        if drop > 0:
            del self._samples[:drop]
            self._first = upto

    def close(self) -> None:
        with contextlib.suppress(av.FFmpegError):
            self._container.close()

    def _encode(self, frame: av.AudioFrame | None) -> None:
        for p in self._stream.encode(frame):
            if p.pts is None or p.pts < 0:
                continue
            sample = AudioSample(bytes(p), p.pts, p.duration or AAC_FRAME)
            self._samples.append(sample)
            if self.history is not None:
                self.history.append(sample)
