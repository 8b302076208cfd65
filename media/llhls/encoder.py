"""The streaming encoder: source frames in, as they arrive; each rendition's CMAF parts
out, each as soon as it is complete.

One fragmented-MP4 muxer per rendition for the whole input (`empty_moov`: its init
segment is written before the first frame); it writes a fragment (moof+mdat) when the
frame after `PartPlan.part_frames` frames arrives, or at an IDR. That fragment is a
part. Encoding is low-delay x264: no B-frames, no lookahead (`zerolatency` by default:
no frame threads either), so a frame's packet comes out when the frame goes in and a
part is published one frame after its last frame was pushed.

Invariants:
- Segments start at the same frame in every rendition (the caller's `push` decides,
  once for all), with a forced IDR; no other IDR (scene cuts off, keyint past the
  longest segment), so a part is INDEPENDENT exactly when it starts a segment.
- Every rendition gets every frame, with the frame's timeline time as its pts (90 kHz):
  renditions' parts line up, and tfdt continues across segments.
- With audio (`LiveAudio`), every rendition's init has the AAC track as track 2, and
  each part carries the AAC packets encoded since that rendition's previous part
  (`media.llhls.fmp4`): parts stay cut, timed and flagged by their video alone.
- A segment starts at a source keyframe once `segment_s` has passed (the segmenter's
  rule, so the pool's segments and these start at the same frames), or is forced at
  twice that when the source's keyframes are further apart, or where the caller says
  the segmenter cut (`push(classic=...)`): the LL segments' starts include every
  classic cut point, so each classic segment starts with an IDR.
- With `classic=True`, every rung's packets are also grouped at those cut points into
  MPEG-TS classic segments (`media.llhls.classic`, `take_classic`): the classic HLS
  of these rungs without a second encode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import av
from av.container import OutputContainer
from av.packet import Packet
from av.video.frame import PictureType, VideoFrame
from av.video.reformatter import VideoReformatter
from av.video.stream import VideoStream

from media.codecs import codec_string_from_annexb
from media.encoders import EncoderSettings
from media.encoders.software import LibX264
from media.ladder import Rendition

from .audio import LiveAudio
from .classic import ClassicCutter, ClassicSegment, EsPacket, remux_ts
from .fmp4 import AAC_CODECS, AudioSample, Sink, timed_samples, with_audio, with_audio_track
from .parts import EncodedPart, PartPlan

__all__ = ["StreamingEncoder", "Tune", "TIME_BASE"]

TIME_BASE = Fraction(1, 90_000)
Tune = Literal["zerolatency", "none"]
_MOVFLAGS = "+".join(
    ["empty_moov", "default_base_moof", "frag_keyframe", "skip_trailer", "cmaf", "frag_discont"]
)


@dataclass(slots=True)
class _Fragment:
    """The packets muxed since the last fragment was written: (time, keyframe)."""

    packets: list[tuple[float, bool]] = field(default_factory=list)


class _RungOutput:
    """One rendition: scaler, x264, fMP4 muxer, and the fragment being filled."""

    def __init__(
        self,
        rendition: Rendition,
        plan: PartPlan,
        keyint: int,
        tune: Tune,
        preset: str,
        classic: bool = False,
    ) -> None:
        self.rendition = rendition
        self._plan = plan
        # Classic segments (`media.llhls.classic`): this rung's packets, cut where the
        # segmenter cut; the completed ones wait in `classic_done` for every rung's.
        self.cutter = ClassicCutter() if classic else None
        self.classic_done: dict[int, list[EsPacket]] = {}
        self._sink = Sink()
        self._container: OutputContainer = av.open(
            self._sink,
            "w",
            format="mp4",
            options={
                # The init segment first (no samples in moov); fragments with their own
                # base offsets (CMAF); one at every IDR and every `part_frames` frames.
                # frag_discont: tfdt is the frame's timeline time, not shifted to 0, so
                # these renditions share the pool's timeline (and a reconnect goes on).
                "movflags": _MOVFLAGS,
                "frag_duration": str(plan.fragment_us),
            },
        )
        params = "bframes=0:rc-lookahead=0" if tune == "zerolatency" else "bframes=0"
        settings = EncoderSettings(preset=preset, threads=1, x264_params=params)
        options = LibX264().options(rendition, keyint, settings)
        if tune == "zerolatency":
            options["tune"] = "zerolatency"
        options["forced-idr"] = "1"
        rate = Fraction(round(plan.fps * 1000), 1000)
        self._video: VideoStream = self._container.add_stream("libx264", rate, options)
        self._video.width, self._video.height = rendition.width, rendition.height
        self._video.pix_fmt = "yuv420p"
        self._video.bit_rate = rendition.video_kbps * 1000
        self._video.time_base = TIME_BASE
        self._video.codec_context.time_base = TIME_BASE
        self._video.codec_context.thread_count = 1
        self._container.start_encoding()
        self.init = self._sink.take()  # ftyp + moov
        self._reformatter = VideoReformatter()
        self._fragment = _Fragment()
        self.codecs: str | None = None

    @property
    def video(self) -> VideoStream:
        return self._video

    def encode(
        self, frame: VideoFrame, t: float, idr: bool
    ) -> list[tuple[bytes, _Fragment, float]]:
        """Encode one frame; the fragments it completed, each with its end time."""
        r = self.rendition
        scaled = self._reformatter.reformat(
            frame, r.width, r.height, "yuv420p", interpolation="BICUBIC"
        )
        scaled.pts, scaled.time_base = round(t * 90_000), TIME_BASE
        scaled.pict_type = PictureType.I if idr else PictureType.NONE
        return self._mux(self._video.encode(scaled))

    def close(self, end: float) -> list[tuple[bytes, _Fragment, float]]:
        """Flush the encoder and the last fragment."""
        done = self._mux(self._video.encode(None))
        if self.cutter is not None:
            for seg in self.cutter.close():
                self.classic_done[seg.sequence] = seg.packets
        self._container.close()
        data = self._sink.take()
        if data and self._fragment.packets:
            done.append((data, self._fragment, end))
        self._fragment = _Fragment()
        return done

    def abort(self) -> None:
        with contextlib.suppress(av.FFmpegError):
            self._container.close()

    def _mux(self, packets: Sequence[Packet[VideoStream]]) -> list[tuple[bytes, _Fragment, float]]:
        done = []
        for packet in packets:
            if self.codecs is None:
                self.codecs = _codecs(bytes(self._video.codec_context.extradata or b""))
            t = float(packet.pts * TIME_BASE) if packet.pts is not None else 0.0
            if self.cutter is not None and packet.pts is not None:
                es = EsPacket(
                    bytes(packet), packet.pts, packet.dts or packet.pts, packet.is_keyframe
                )
                for seg in self.cutter.add(es):
                    self.classic_done[seg.sequence] = seg.packets
            self._container.mux(packet)
            data = self._sink.take()
            if data:  # the muxer wrote the fragment before this packet: a part is done
                done.append((data, self._fragment, t))
                self._fragment = _Fragment()
            self._fragment.packets.append((t, packet.is_keyframe))
        return done


class StreamingEncoder:
    """Frames of one input in, parts of every rendition out (see module docstring).

    `push` and `close` return the parts they completed, in order, for all renditions.
    `inits` holds each rendition's init segment; `epoch` names this encoder session
    (a new input gets a new encoder, init segment and epoch).
    """

    def __init__(
        self,
        renditions: Sequence[Rendition],
        plan: PartPlan,
        *,
        epoch: int = 0,
        tune: Tune = "zerolatency",
        preset: str = "veryfast",
        audio: LiveAudio | None = None,
        classic: bool = False,
    ) -> None:
        if not renditions:
            raise ValueError("no renditions to encode")
        self.plan = plan
        self.epoch = epoch
        keyint = 2 * round(plan.fps * plan.segment_s) + 1  # past the longest segment
        self._rungs: list[_RungOutput] = []
        try:
            for r in renditions:
                self._rungs.append(_RungOutput(r, plan, keyint, tune, preset, classic))
        except BaseException:
            self.abort()
            raise
        self.audio = audio
        if audio is not None and classic:
            audio.history = []  # the classic segments' audio (`_classic_audio`)
        self._classic: list[ClassicSegment] = []
        self._classic_now: int | None = None  # the classic segment being filled
        self._damaged: set[int] = set()  # classic segments with a frame decoded with errors
        self._audio_next: dict[str, int] = {o.rendition.name: 0 for o in self._rungs}
        self.inits = {
            o.rendition.name: with_audio_track(o.init, audio.init) if audio else o.init
            for o in self._rungs
        }
        self._segment_start: float | None = None
        # Per rendition: the segment being filled (counted by IDRs) and its next part.
        self._segment: dict[str, int] = {}
        self._parts: dict[str, int] = {}
        self._last_t: float | None = None
        self.frames = 0

    @property
    def codecs(self) -> dict[str, str]:
        """Each rendition's RFC 6381 string(s), video read back from its first packet."""
        audio = f",{AAC_CODECS}" if self.audio else ""
        return {o.rendition.name: o.codecs + audio for o in self._rungs if o.codecs}

    def push(
        self,
        frame: VideoFrame,
        t: float,
        *,
        keyframe: bool = False,
        classic: int | None = None,
        damaged: bool = False,
    ) -> list[EncodedPart]:
        """Encode a frame shown at timeline time `t` (s, increasing); `keyframe`: the
        source has a keyframe here (a segment may start); `classic`: the segmenter's
        segment of that number starts here (a segment starts); `damaged`: the frame
        decoded with errors."""
        if self._last_t is not None and t <= self._last_t:
            return []  # a repeated or out-of-order time: the muxer would refuse it
        self._last_t = t
        idr = classic is not None or self._starts_segment(t, keyframe)
        if classic is not None:
            self._classic_now = classic
        if damaged and self._classic_now is not None:
            self._damaged.add(self._classic_now)
        if idr:
            self._segment_start = t
        self.frames += 1
        out: list[EncodedPart] = []
        for o in self._rungs:
            if classic is not None and o.cutter is not None:
                o.cutter.start(classic, t)
            out += self._parts_of(o, o.encode(frame, t, idr))
        self._collect_classic()
        return out

    def take_classic(self) -> list[ClassicSegment]:
        """The classic segments completed in every rung since the last call."""
        out, self._classic = self._classic, []
        return out

    def close(self) -> list[EncodedPart]:
        end = (self._last_t or 0.0) + self.plan.frame_s
        if self.audio:
            self.audio.flush()  # into the last parts
        out: list[EncodedPart] = []
        for o in self._rungs:
            out += self._parts_of(o, o.close(end))
        self._collect_classic(last=True)
        if self.audio:
            self.audio.close()
        return out

    def abort(self) -> None:
        for o in self._rungs:
            o.abort()
        if self.audio:
            self.audio.close()

    def _collect_classic(self, *, last: bool = False) -> None:
        """Remux the classic segments every rung has completed (in sequence order)."""
        ready = set.intersection(*(set(o.classic_done) for o in self._rungs))
        for sequence in sorted(ready):
            packets = {o.rendition.name: o.classic_done.pop(sequence) for o in self._rungs}
            ends = [p[-1].pts for p in packets.values() if p]
            frame = round(self.plan.frame_s * 90_000)
            end = None if last and sequence == max(ready) else (max(ends) + frame if ends else None)
            audio = self._classic_audio(end)
            for o in self._rungs:
                self._classic.append(
                    self._classic_segment(o, sequence, packets[o.rendition.name], audio)
                )
            self._damaged.discard(sequence)

    def _classic_audio(self, end_90k: int | None) -> list[AudioSample]:
        """The AAC samples no classic segment took that start before `end_90k` (None:
        all of them)."""
        audio = self.audio
        if audio is None or audio.history is None:
            return []
        if end_90k is None:
            taken, audio.history = audio.history, []
            return taken
        limit = end_90k * audio.rate / 90_000
        n = next((i for i, a in enumerate(audio.history) if a.pts > limit), len(audio.history))
        taken, audio.history = audio.history[:n], audio.history[n:]
        return taken

    def _classic_segment(
        self, o: _RungOutput, sequence: int, packets: list[EsPacket], audio: list[AudioSample]
    ) -> ClassicSegment:
        r, a = o.rendition, self.audio
        data = (
            remux_ts(packets, o.video, audio, a.rate if a else 0, r.audio_kbps) if packets else b""
        )
        first = packets[0].pts if packets else 0
        last = packets[-1].pts if packets else 0
        return ClassicSegment(
            rendition=r.name,
            source_sequence=sequence,
            data=data,
            start=first / 90_000,
            duration=(last - first) / 90_000 + self.plan.frame_s,
            frames=len(packets),
            width=r.width,
            height=r.height,
            codecs=self.codecs.get(r.name, r.codecs),
            damaged=sequence in self._damaged,
        )

    def _starts_segment(self, t: float, keyframe: bool) -> bool:
        if self._segment_start is None:
            return True
        elapsed = t - self._segment_start
        slack = self.plan.frame_s / 4  # FLV's millisecond timestamps
        return (keyframe and elapsed >= self.plan.segment_s - slack) or (
            elapsed >= 2 * self.plan.segment_s - slack
        )

    def _parts_of(
        self, o: _RungOutput, done: list[tuple[bytes, _Fragment, float]]
    ) -> list[EncodedPart]:
        name = o.rendition.name
        parts = []
        for data, fragment, end in done:
            data = self._with_audio(name, data)
            start, independent = fragment.packets[0]
            if independent:
                self._segment[name] = self._segment.get(name, -1) + 1
                self._parts[name] = 0
            index = self._parts.get(name, 0)
            segment = self._segment.get(name, 0)
            parts.append(
                EncodedPart(
                    rendition=name,
                    epoch=self.epoch,
                    segment=segment,
                    index=index,
                    start=start,
                    duration=max(end - start, 0.001),
                    frames=len(fragment.packets),
                    independent=independent,
                    data=data,
                )
            )
            self._parts[name] = index + 1
        return parts

    def _with_audio(self, name: str, fragment: bytes) -> bytes:
        """The fragment with the audio encoded since this rendition's previous part."""
        if self.audio is None:
            return fragment
        samples, self._audio_next[name] = self.audio.take(self._audio_next[name])
        self.audio.trim(min(self._audio_next.values()))
        return with_audio(fragment, timed_samples(samples))


def _codecs(extradata: bytes) -> str:
    """RFC 6381 string from the encoder's global header: avcC (its profile, constraint
    and level bytes) or Annex B SPS/PPS."""
    if extradata[:1] == b"\x01" and len(extradata) >= 4:
        return "avc1." + extradata[1:4].hex()
    return codec_string_from_annexb(extradata, "h264")
