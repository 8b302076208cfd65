"""Segmenter: cuts only at keyframes, about every target duration, keeps every frame,
survives garbage, flushes a partial last segment, continues the timeline."""

from __future__ import annotations

import io
import random

import av
import pytest

from media.segmenter import (
    TIMELINE_ORIGIN_S,
    InvalidSourceError,
    Segmenter,
    SourceSegment,
)
from tests.utils.media import CLIP, CLIP_FRAMES, ChunkedReader, frame_index, synthetic


def video_packets(segment: SourceSegment) -> list[av.Packet]:
    with av.open(io.BytesIO(segment.data), "r") as c:
        return [p for p in c.demux(video=0) if p.size]


def indices(segments: list[SourceSegment]) -> list[int]:
    out: list[int] = []
    for s in segments:
        with av.open(io.BytesIO(s.data), "r") as c:
            out += [frame_index(f) for f in c.decode(video=0)]
    return out


def assert_contiguous(segments: list[SourceSegment]) -> None:
    for a, b in zip(segments, segments[1:], strict=False):
        assert b.start_pts_seconds == pytest.approx(a.end_pts_seconds, abs=1e-6)
        assert b.sequence == a.sequence + 1


def test_cuts_at_keyframes_every_target_from_a_live_flv_pipe() -> None:
    data = synthetic(fmt="flv", frames=130, gop=25)
    segments = list(Segmenter(ChunkedReader(data, 1000), format="flv", target_duration=2.0))
    assert [s.duration for s in segments] == pytest.approx([2.0, 2.0, 1.2])
    assert [s.frames for s in segments] == [50, 50, 30]
    assert [s.keyframe_count for s in segments] == [2, 2, 2]
    assert segments[0].start_pts_seconds == pytest.approx(TIMELINE_ORIGIN_S)
    assert_contiguous(segments)
    for s in segments:
        assert (s.video_codec, s.width, s.height, s.fps) == ("h264", 320, 240, 25)
        assert s.has_audio
        packets = video_packets(s)
        assert packets[0].is_keyframe
        assert len(packets) == s.frames
    # Every source frame, once, in order.
    assert indices(segments) == list(range(130))


@pytest.mark.parametrize(("target", "durations"), [(1.0, [1.0] * 4), (1.5, [2.0, 2.0])])
def test_a_segment_ends_at_the_first_keyframe_at_or_after_the_target(
    target: float, durations: list[float]
) -> None:
    data = synthetic(fmt="mpegts", frames=100, gop=25, audio=False)
    segments = list(Segmenter(io.BytesIO(data), target_duration=target))
    assert [s.duration for s in segments] == pytest.approx(durations)


def test_a_gop_longer_than_the_target_is_never_split() -> None:
    # The sample clip is one 132-frame GOP.
    segments = list(Segmenter(str(CLIP), target_duration=2.0))
    assert len(segments) == 1
    (s,) = segments
    assert (s.frames, s.keyframe_count, s.has_audio) == (CLIP_FRAMES, 1, True)
    assert s.duration == pytest.approx(CLIP_FRAMES / 25)
    assert (s.width, s.height) == (1280, 720)
    with av.open(io.BytesIO(s.data), "r") as c:
        audio = [p for p in c.demux(audio=0) if p.size]
    # All the clip's audio, including the packet muxed before the first keyframe.
    assert len(audio) == 249


def test_hevc_without_audio() -> None:
    data = synthetic(fmt="flv", codec="libx265", frames=60, gop=20, audio=False, size=(256, 144))
    segments = list(Segmenter(ChunkedReader(data), format="flv", target_duration=1.0))
    # Keyframes every 0.8 s: the first at or after 1 s is at 1.6 s.
    assert [s.frames for s in segments] == [40, 20]
    assert {s.video_codec for s in segments} == {"hevc"}
    assert not any(s.has_audio for s in segments)
    assert sum(s.frames for s in segments) == 60
    assert all(video_packets(s)[0].is_keyframe for s in segments)
    assert indices(segments) == list(range(60))


def test_garbage_in_the_input_is_skipped_and_the_rest_comes_through() -> None:
    data = synthetic(fmt="mpegts", frames=150, gop=25)
    rng = random.Random(7)
    cut = len(data) // 3
    dirty = data[:cut] + rng.randbytes(5000) + data[cut:]
    seg = Segmenter(ChunkedReader(dirty), format="mpegts", target_duration=1.0)
    segments = list(seg)
    got = indices(segments)
    # The damaged GOP may lose its tail, never more; later GOPs arrive whole.
    assert len(got) >= 150 - 25
    assert got == sorted(got) and got[-25:] == list(range(125, 150))
    assert seg.stats.corrupt_packets + seg.stats.dropped_packets + seg.stats.demux_errors > 0
    assert all(video_packets(s)[0].is_keyframe for s in segments)


def test_garbage_in_an_flv_stream() -> None:
    data = synthetic(fmt="flv", frames=150, gop=25)
    cut = len(data) // 2
    dirty = data[:cut] + random.Random(11).randbytes(3000) + data[cut:]
    segments = list(Segmenter(ChunkedReader(dirty), format="flv", target_duration=1.0))
    got = indices(segments)
    assert len(got) >= 150 - 25 and got[-25:] == list(range(125, 150))


def test_an_input_that_ends_mid_segment_flushes_the_partial_segment() -> None:
    data = synthetic(fmt="flv", frames=100, gop=25)
    segments = list(Segmenter(io.BytesIO(data[: int(len(data) * 0.7)]), format="flv"))
    assert len(segments) == 2
    assert segments[0].frames == 50
    assert 0 < segments[1].frames < 50
    assert indices(segments) == list(range(50 + segments[1].frames))


def test_a_timestamp_reset_inside_one_input_continues_the_timeline() -> None:
    # MPEG-TS concatenates; the second file's clock starts again, as after a reconnect
    # behind a relay that kept the connection.
    part = synthetic(fmt="mpegts", frames=50, gop=25, audio=False)
    seg = Segmenter(io.BytesIO(part + part), format="mpegts", target_duration=1.0)
    segments = list(seg)
    assert [s.discontinuity for s in segments] == [False, False, True, False]
    assert seg.stats.discontinuities == 1
    assert_contiguous(segments)
    # The MPEG-TS demuxer flags the packet where the continuity counters jump as
    # corrupt; it is dropped with the rest of its GOP. The second part is whole.
    assert [s.frames for s in segments[2:]] == [25, 25]
    assert segments[1].frames >= 20


def test_a_reconnect_through_a_new_input_continues_numbering_and_timeline() -> None:
    data = synthetic(fmt="flv", frames=50, gop=25, audio=False)
    first = Segmenter(io.BytesIO(data), format="flv", target_duration=1.0)
    a = list(first)
    second = Segmenter(
        io.BytesIO(data),
        format="flv",
        target_duration=1.0,
        first_sequence=first.next_sequence,
        start_time=first.end_time,
        discontinuity=True,
    )
    b = list(second)
    assert [s.sequence for s in a + b] == [0, 1, 2, 3]
    assert [s.discontinuity for s in b] == [True, False]
    assert_contiguous(a + b)


@pytest.mark.parametrize("data", [b"", b"\x00" * 10_000, random.Random(3).randbytes(20_000)])
def test_unreadable_input_raises_invalid_source(data: bytes) -> None:
    with pytest.raises(InvalidSourceError):
        Segmenter(io.BytesIO(data), format="flv")


def test_audio_only_input_raises_invalid_source() -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="adts") as out:
        stream = out.add_stream("aac", rate=48_000)
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate, frame.pts = 48_000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(InvalidSourceError, match="no H.264/HEVC video"):
        Segmenter(io.BytesIO(buf.getvalue()))
