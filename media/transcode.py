"""Transcode one source segment to every rendition of the ladder.

Invariants:
- The source segment is demuxed and decoded once (`demux`); each decoded frame is
  scaled (or enhanced, for renditions that need upscaling and when a hook is given)
  and encoded for every rendition (`scale`, `mux`).
- Frame count: every rendition has exactly the source segment's frames, with the
  source's timestamps (no drops, no duplicates, no retiming), so consecutive
  segments, transcoded independently and in any order, play back seamlessly.
- Each rendition segment is one closed GOP: it starts with an IDR and the encoder's
  keyint is the segment's frame count, with scene-cut keyframes off (`encoders`).
- Audio is encoded once per distinct audio bitrate and the same packets are muxed
  into every rendition (`audio`) but 20K tiles, which are video only
  (`Rendition.has_audio`).
- Every rendition is checked by the encoder layer before the segment is read: one
  above its codec's levels raises `RenditionNotEncodableError`.
- Anything wrong with the input (unreadable, corrupt or undecodable packets, fewer
  frames than packets or than the caller expects) raises `CorruptSegmentError`
  before or while encoding; nothing half-made is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from av.video.frame import VideoFrame

from .audio import EncodedAudio, encode_audio
from .codecs import codec_string_from_annexb
from .demux import TS_TIME_BASE, CorruptSegmentError, DemuxedSegment, decode_video, demux
from .encoders import (
    Encoder,
    EncoderRegistry,
    EncoderSettings,
    RenditionNotEncodableError,
    default_registry,
)
from .hdr import ColourMapper
from .ladder import Rendition
from .mux import RenditionOutput
from .scale import FrameFanout, FrameHook, Scaler

__all__ = [
    "CorruptSegmentError",
    "EncoderSettings",
    "FrameHook",
    "RenditionNotEncodableError",
    "RenditionSegment",
    "SegmentTranscoder",
]


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
    init: bytes | None = None  # fMP4 renditions (HDR): the init segment (media.cmaf)

    @property
    def size(self) -> int:
        return len(self.data)


class SegmentTranscoder:
    """Stateless between calls: safe to reuse for segments of any stream, in any order.
    `registry` chooses each rendition's encoder (the process's own by default)."""

    def __init__(
        self, settings: EncoderSettings | None = None, registry: EncoderRegistry | None = None
    ) -> None:
        self.settings = settings or EncoderSettings()
        self._scaler = Scaler(self.settings.interpolation, self.settings.threads)
        self._registry = registry or default_registry()

    def transcode(
        self,
        segment_bytes: bytes,
        renditions: Sequence[Rendition],
        frame_hook: FrameHook | None = None,
        *,
        expected_frames: int | None = None,
        between_frames: Callable[[], object] | None = None,
    ) -> dict[str, RenditionSegment]:
        """Every rendition of one MPEG-TS source segment, keyed by rendition name.

        `expected_frames` (the `SourceSegment.frames` the segmenter counted) turns a
        truncated segment that still decodes into a `CorruptSegmentError`.
        `between_frames` is called before each decoded frame is fed to the encoders and
        before each rendition's encoder is flushed (its lookahead's frames are encoded
        then): a caller may block in it to give its CPUs to other work (the media
        worker's upper-rung job yields to a lowest rung running beside it).
        """
        encoders = self._encoders(renditions)
        source = demux(segment_bytes)
        if expected_frames is not None and len(source.video) != expected_frames:
            raise CorruptSegmentError(
                f"segment holds {len(source.video)} video frames, expected {expected_frames}"
            )
        outputs = self._outputs(source, renditions, encoders)
        try:
            first_pts, last_pts = self._encode_video(source, outputs, frame_hook, between_frames)
            encoded = [(o, _close(o, between_frames)) for o in outputs]
        except BaseException:
            for o in outputs:
                o.abort()
            raise
        duration = float((last_pts - first_pts) * TS_TIME_BASE + 1 / source.rate)
        start = float(first_pts * TS_TIME_BASE)
        return {o.rendition.name: _segment(o, data, source, start, duration) for o, data in encoded}

    def _encoders(self, renditions: Sequence[Rendition]) -> list[Encoder]:
        """One checked encoder per rendition, before any work is done."""
        if not renditions:
            raise ValueError("no renditions to transcode to")
        names = [r.name for r in renditions]
        if len(set(names)) != len(names):
            raise ValueError(f"rendition names must be unique, got {names}")
        return [self._registry.encoder_for(r, self.settings) for r in renditions]

    def _outputs(
        self, source: DemuxedSegment, renditions: Sequence[Rendition], encoders: list[Encoder]
    ) -> list[RenditionOutput]:
        audio: dict[int, list[EncodedAudio]] = {}
        if source.audio:
            audio = {
                kbps: encode_audio(source, kbps)
                for kbps in sorted({r.audio_kbps for r in renditions if r.has_audio})
            }
        colour = ColourMapper()  # one per segment: each frame mapped once per range
        return [
            RenditionOutput(
                r,
                encoder,
                source.rate,
                len(source.video),
                audio[r.audio_kbps] if source.audio and r.has_audio else None,
                source.audio_rate,
                self.settings,
                colour,
            )
            for r, encoder in zip(renditions, encoders, strict=True)
        ]

    def _encode_video(
        self,
        source: DemuxedSegment,
        outputs: list[RenditionOutput],
        hook: FrameHook | None,
        between_frames: Callable[[], object] | None = None,
    ) -> tuple[int, int]:
        """Decode once and feed every output; the first and last pts on the TS clock."""
        fanout = FrameFanout(outputs, self._scaler, hook, self.settings.hook_batch)
        clock = _Clock(step=max(1, round(1 / (source.rate * TS_TIME_BASE))))
        decoded = 0
        for frame in decode_video(source, self.settings.threads, self.settings.decode_hwaccel):
            if frame.is_corrupt:
                raise CorruptSegmentError(f"frame {decoded} decoded with errors")
            decoded += 1
            clock.stamp(frame)
            if between_frames is not None:
                between_frames()
            fanout.push(frame)
        fanout.flush()
        if decoded != len(source.video) or clock.first is None or clock.last is None:
            raise CorruptSegmentError(
                f"decoded {decoded} frames from {len(source.video)} video packets"
            )
        return clock.first, clock.last


def _close(output: RenditionOutput, pause: Callable[[], object] | None) -> bytes:
    """Flush one rendition's encoder and muxer, after the caller's pause if any."""
    if pause is not None:
        pause()
    return output.close()


class _Clock:
    """Keeps the source's clock: invents a timestamp only where the decoder has none, and
    never lets it go backwards (the encoder would reject it)."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.first: int | None = None
        self.last: int | None = None

    def stamp(self, frame: VideoFrame) -> None:
        pts = frame.pts if frame.pts is not None else (self.last or 0) + self.step
        if self.last is not None and pts <= self.last:
            pts = self.last + 1
        self.first = pts if self.first is None else self.first
        self.last = pts
        frame.pts, frame.time_base = pts, TS_TIME_BASE


def _segment(
    o: RenditionOutput, data: bytes, source: DemuxedSegment, start: float, duration: float
) -> RenditionSegment:
    if o.frames != len(source.video):  # the invariant this module exists for
        raise RuntimeError(f"{o.rendition.name}: encoded {o.frames} of {len(source.video)} frames")
    codecs = codec_string_from_annexb(o.first_video or b"", o.rendition.codec)
    return RenditionSegment(
        rendition=o.rendition.name,
        data=data,
        start_pts_seconds=start,
        duration=duration,
        frames=o.frames,
        width=o.rendition.width,
        height=o.rendition.height,
        codecs=f"{codecs},mp4a.40.2" if source.audio and o.rendition.has_audio else codecs,
        init=o.init,
    )
