"""SegmentTranscoder: exact frame counts and timestamps per rendition, sizes, audio,
one IDR per segment, codec strings read from the bitstream, hooks, corrupt input."""

from __future__ import annotations

import io
import random
from typing import Any

import av
import numpy as np
import pytest

from media.ladder import Rendition, build_ladder
from media.sampling import sample_frames
from media.segmenter import Segmenter
from media.transcode import (
    CorruptSegmentError,
    EncoderSettings,
    RenditionSegment,
    SegmentTranscoder,
)
from tests.utils.media import clip_segments, frame_index, synthetic

transcoder = SegmentTranscoder(EncoderSettings(threads=1))


def demux(data: bytes) -> tuple[list[av.Packet], list[av.Packet]]:
    # Sort by stream while the container is open: a packet's .stream dies with it.
    video: list[av.Packet] = []
    audio: list[av.Packet] = []
    with av.open(io.BytesIO(data), "r") as c:
        for p in c.demux():
            if p.size:
                (video if p.stream.type == "video" else audio).append(p)
    return video, audio


def decoded(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data), "r") as c:
        return list(c.decode(video=0))


def pts(items: list[av.VideoFrame] | list[av.Packet]) -> list[int]:
    out = [x.pts for x in items]
    assert None not in out
    return [p for p in out if p is not None]


def synthetic_segment(**kwargs: Any) -> bytes:
    (segment,) = Segmenter(io.BytesIO(synthetic(**kwargs)), format="flv", target_duration=99)
    return segment.data


def test_a_real_segment_to_the_ladder_keeps_every_frame_size_and_audio() -> None:
    source = clip_segments()[0]
    renditions, _ = build_ladder(source.width, source.height, "1080p", False, fps=source.fps)
    out = transcoder.transcode(source.data, renditions, expected_frames=source.frames)
    assert list(out) == ["720p", "480p", "360p"]
    src_video, src_audio = demux(source.data)
    src_pts = sorted(pts(src_video))
    for r in renditions:
        seg = out[r.name]
        assert (seg.frames, seg.width, seg.height) == (source.frames, r.width, r.height)
        assert seg.duration == pytest.approx(source.duration)
        assert seg.start_pts_seconds == pytest.approx(source.start_pts_seconds)
        frames = decoded(seg.data)
        assert len(frames) == source.frames == 50
        assert {(f.width, f.height) for f in frames} == {(r.width, r.height)}
        # Same clock as the source: frame for frame, no retiming.
        assert pts(frames) == src_pts
        video, audio = demux(seg.data)
        assert [p.is_keyframe for p in video] == [True] + [False] * 49
        assert seg.codecs == r.codecs  # what the SPS says is what the ladder promises
        # Audio: one encode, muxed everywhere, covering the segment (plus priming).
        assert len(audio) in (len(src_audio), len(src_audio) + 1)
        assert audio[-1].pts == src_audio[-1].pts
    assert out["720p"].data != out["360p"].data


def test_consecutive_segments_are_seamless() -> None:
    a, b = clip_segments()[:2]
    r = [Rendition("360p", 640, 360, 800, fps=25)]
    first, second = transcoder.transcode(a.data, r)["360p"], transcoder.transcode(b.data, r)["360p"]
    last = max(pts(decoded(first.data)))
    assert min(pts(decoded(second.data))) == last + 90_000 // 25
    assert second.start_pts_seconds == pytest.approx(first.start_pts_seconds + first.duration)


def test_every_frame_survives_in_order_with_b_frames() -> None:
    data = synthetic_segment(frames=60, gop=60, preset="veryfast")  # veryfast: B-frames
    renditions = [
        Rendition("240p", 320, 240, 600, fps=25),
        Rendition("120p", 160, 120, 200, fps=25),
    ]
    out = transcoder.transcode(data, renditions)
    for seg in out.values():
        assert [frame_index(f) for f in decoded(seg.data)] == list(range(60))


def test_open_gop_keyframes_get_parameter_sets_and_decode() -> None:
    # With open GOPs x264 marks recovery-point I-frames (not IDRs) as keyframes; the
    # muxer repeats SPS/PPS only before IDRs, so the segmenter must add them.
    data = synthetic(frames=75, gop=25, preset="veryfast", x264_params="open-gop=1")
    segments = list(Segmenter(io.BytesIO(data), format="flv", target_duration=1.0))
    assert len(segments) == 3
    r = [Rendition("240p", 320, 240, 600, fps=25)]
    got: list[int] = []
    for s in segments:
        out = transcoder.transcode(s.data, r, expected_frames=s.frames)["240p"]
        got += [frame_index(f) for f in decoded(out.data)]
    assert got == list(range(75))


def test_hevc_in_and_out() -> None:
    data = synthetic_segment(codec="libx265", frames=30, gop=30, audio=False, size=(256, 144))
    renditions = [
        Rendition("h264", 256, 144, 300, fps=25),
        Rendition("hevc", 256, 144, 300, codec="hevc", fps=25),
    ]
    out = transcoder.transcode(data, renditions)
    assert out["h264"].codecs == "avc1.64000c"  # level 1.2, no audio
    # Level 2: 256x144 at 25 fps is over level 1's luma sample rate.
    assert out["hevc"].codecs == renditions[1].video_codec_string == "hvc1.1.6.L60.90"
    for seg in out.values():
        assert [frame_index(f) for f in decoded(seg.data)] == list(range(30))
        video, audio = demux(seg.data)
        assert not audio and video[0].is_keyframe


def test_frame_hook_runs_only_for_upscaled_renditions() -> None:
    data = synthetic_segment(frames=20, gop=20)
    calls: list[tuple[str, tuple[int, ...]]] = []

    def double(frames: np.ndarray, rendition: Rendition) -> np.ndarray:
        calls.append((rendition.name, frames.shape))
        return frames.repeat(2, axis=1).repeat(2, axis=2)

    renditions = [
        Rendition("480p", 640, 480, 1_000, fps=25, needs_upscale=True),
        Rendition("240p", 320, 240, 600, fps=25),
    ]
    out = SegmentTranscoder(EncoderSettings(hook_batch=8)).transcode(data, renditions, double)
    assert calls == [
        ("480p", (8, 240, 320, 3)),
        ("480p", (8, 240, 320, 3)),
        ("480p", (4, 240, 320, 3)),
    ]
    frames = decoded(out["480p"].data)
    assert [frame_index(f) for f in frames] == list(range(20))
    assert {(f.width, f.height) for f in frames} == {(640, 480)}

    def lossy(frames: np.ndarray, rendition: Rendition) -> np.ndarray:
        return frames[1:]

    with pytest.raises(ValueError, match="frame_hook must return"):
        transcoder.transcode(data, renditions, lossy)


def test_without_audio_there_is_no_audio_codec() -> None:
    data = synthetic_segment(frames=10, gop=10, audio=False)
    (seg,) = transcoder.transcode(data, [Rendition("240p", 320, 240, 600, fps=25)]).values()
    assert isinstance(seg, RenditionSegment)
    assert seg.codecs == "avc1.64000d" and not demux(seg.data)[1]


def test_the_caller_may_pause_between_frames_and_before_each_flush() -> None:
    """`between_frames` runs before every decoded frame is encoded and before every
    rendition's encoder is flushed: where the media worker's upper-rung job yields."""
    data = synthetic_segment(frames=10, gop=10)
    ladder = [Rendition("240p", 320, 240, 600, fps=25), Rendition("180p", 320, 180, 400, fps=25)]
    log: list[str] = []
    out = transcoder.transcode(data, ladder, between_frames=lambda: log.append("pause"))
    assert len(log) == 10 + len(ladder) and all(s.frames == 10 for s in out.values())


def test_corrupt_segments_raise() -> None:
    source = clip_segments()[0]
    r = [Rendition("180p", 320, 180, 300, fps=25)]
    with pytest.raises(CorruptSegmentError, match="not an MPEG-TS segment"):
        transcoder.transcode(b"garbage!" * 188, r)
    with pytest.raises(CorruptSegmentError, match="truncated"):
        transcoder.transcode(source.data[: len(source.data) // 2 + 5], r)
    # Cut on a packet boundary it still decodes: the segmenter's count catches it.
    cut = source.data[: len(source.data) // 188 // 2 * 188]
    with pytest.raises(CorruptSegmentError, match="expected 50"):
        transcoder.transcode(cut, r, expected_frames=source.frames)
    damaged = bytearray(source.data)
    rng = random.Random(1)
    for _ in range(20):
        damaged[rng.randrange(len(damaged))] = rng.randrange(256)
    with pytest.raises(CorruptSegmentError):
        transcoder.transcode(bytes(damaged), r)
    assert issubclass(CorruptSegmentError, ValueError)


def test_bad_rendition_lists() -> None:
    data = synthetic_segment(frames=5, gop=5, audio=False)
    r = Rendition("240p", 320, 240, 600)
    with pytest.raises(ValueError, match="unique"):
        transcoder.transcode(data, [r, r])
    with pytest.raises(ValueError, match="no renditions"):
        transcoder.transcode(data, [])


def test_sample_frames_for_moderation() -> None:
    data = synthetic_segment(frames=50, gop=50)
    frames = sample_frames(data, per_second=5.0)
    assert [frame_index(f) for f in frames] == list(range(0, 50, 5))
    assert frames[0].shape == (240, 320, 3) and frames[0].dtype == np.uint8
    source = clip_segments()[0]
    assert len(sample_frames(source.data, per_second=1.0)) == 2
    with pytest.raises(ValueError):
        sample_frames(data, per_second=0)
