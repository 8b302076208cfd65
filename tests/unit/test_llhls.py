"""LL-HLS core (media/llhls): the part plan, the streaming encoder on real x264 and
the fMP4 muxer, the playlist writer, and the validator that checks it."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import av
import numpy as np
import pytest

from media.ladder import Rendition
from media.llhls.audio import LiveAudio
from media.llhls.encoder import StreamingEncoder
from media.llhls.parts import EncodedPart, PartPlan, init_name, part_name, segment_name
from media.llhls.playlist import LlPart, LlSegment, RenditionReport, ll_media_playlist
from media.llhls.validate import problems

FPS = 25
RUNGS = (
    Rendition("180p", 320, 180, 300, fps=FPS),
    Rendition("90p", 160, 90, 150, fps=FPS),
)


def _frames(n: int) -> list[av.VideoFrame]:
    rng = np.random.default_rng(7)
    return [
        av.VideoFrame.from_ndarray(rng.integers(0, 255, (180, 320, 3), np.uint8), format="rgb24")
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def encoded() -> tuple[StreamingEncoder, list[EncodedPart]]:
    """3.2 s of 25 fps with a source keyframe every 2 s, into two renditions."""
    enc = StreamingEncoder(RUNGS, PartPlan.for_rate(FPS, 2.0), preset="ultrafast")
    parts: list[EncodedPart] = []
    for i, frame in enumerate(_frames(80)):
        parts += enc.push(frame, 10.0 + i / FPS, keyframe=i % 50 == 0)
    parts += enc.close()
    return enc, parts


def test_part_plan_divides_segments() -> None:
    assert PartPlan.for_rate(25, 2.0).part_frames == 10
    assert PartPlan.for_rate(30, 2.0).part_frames == 12
    assert PartPlan.for_rate(60, 2.0).part_frames == 24
    for fps in (24.0, 25.0, 29.97, 30.0, 50.0, 60.0):
        plan = PartPlan.for_rate(fps, 2.0)
        assert 0.33 <= plan.part_frames / fps <= 0.5
        assert plan.part_frames / fps < plan.part_target <= 0.5 + 1 / fps


def test_parts_are_timed_and_flagged(encoded: tuple[StreamingEncoder, list[EncodedPart]]) -> None:
    enc, parts = encoded
    plan = enc.plan
    for rung in RUNGS:
        mine = [p for p in parts if p.rendition == rung.name]
        assert sum(p.frames for p in mine) == 80
        # 2 s segments of 0.4 s parts; the input ends 1.2 s into the second.
        assert [(p.segment, p.index) for p in mine] == [(0, i) for i in range(5)] + [
            (1, i) for i in range(3)
        ]
        assert all(p.duration <= plan.part_target for p in mine)
        # Independent exactly at segment starts: the source keyframes at 0 s and 2 s.
        assert [p.start for p in mine if p.independent] == [10.0, 12.0]
        assert all(p.independent == (p.index == 0) for p in mine)
        assert [p.segment for p in mine if p.independent] == [0, 1]
        # Parts are contiguous on the timeline.
        for a, b in zip(mine, mine[1:], strict=False):
            assert b.start == pytest.approx(a.start + a.duration, abs=1e-6)


def test_init_and_parts_decode_to_every_frame(
    encoded: tuple[StreamingEncoder, list[EncodedPart]],
) -> None:
    enc, parts = encoded
    for rung in RUNGS:
        data = enc.inits[rung.name] + b"".join(p.data for p in parts if p.rendition == rung.name)
        with av.open(io.BytesIO(data)) as c:
            frames = list(c.decode(video=0))
        assert len(frames) == 80
        assert (frames[0].width, frames[0].height) == (rung.width, rung.height)
        assert frames[0].pts * frames[0].time_base == pytest.approx(10.0, abs=1e-3)
    assert re.fullmatch(r"avc1\.[0-9a-f]{6}", enc.codecs["180p"])


def test_a_segment_alone_decodes_after_the_init(
    encoded: tuple[StreamingEncoder, list[EncodedPart]],
) -> None:
    enc, parts = encoded
    second = [p for p in parts if p.rendition == "90p" and p.segment == 1]
    with av.open(io.BytesIO(enc.inits["90p"] + b"".join(p.data for p in second))) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == sum(p.frames for p in second)
    assert frames[0].key_frame


def test_long_source_gop_forces_a_segment_at_twice_the_target() -> None:
    enc = StreamingEncoder(RUNGS[1:], PartPlan.for_rate(FPS, 1.0), preset="ultrafast")
    parts: list[EncodedPart] = []
    for i, frame in enumerate(_frames(60)):
        parts += enc.push(frame, i / FPS, keyframe=i == 0)  # one source keyframe only
    parts += enc.close()
    assert [p.start for p in parts if p.independent] == pytest.approx([0.0, 2.0])


def _playlist(
    n_segments: int, *, parts_in_progress: int = 2, ended: bool = False, skip: bool = False
) -> str:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    segments = []
    for s in range(n_segments):
        parts = tuple(LlPart(i, 0.4, part_name(s, i), i == 0) for i in range(5))
        segments.append(
            LlSegment(s, 2.0, segment_name(s), init_name(0), t0 + timedelta(seconds=2 * s), parts)
        )
    if parts_in_progress and not ended:
        parts = tuple(
            LlPart(i, 0.4, part_name(n_segments, i), i == 0) for i in range(parts_in_progress)
        )
        segments.append(LlSegment(n_segments, 0.8, "", init_name(0), t0, parts, complete=False))
    return ll_media_playlist(
        segments,
        target_duration=2,
        part_target=0.42,
        ended=ended,
        skip=skip,
        preload_hint=None if ended else part_name(n_segments, parts_in_progress),
        reports=[RenditionReport("../90p/index.m3u8", n_segments, parts_in_progress - 1)],
        uri_suffix="?pt=abc",
    )


def test_playlist_has_the_low_latency_tags_and_passes_the_rules() -> None:
    text = _playlist(10)
    assert problems(text) == []
    assert "#EXT-X-PART-INF:PART-TARGET=0.420" in text
    assert "CAN-BLOCK-RELOAD=YES" in text and "PART-HOLD-BACK=1.260" in text
    assert "CAN-SKIP-UNTIL=12.0" in text
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="00000010.2.m4s?pt=abc"' in text
    assert '#EXT-X-MAP:URI="init-0.mp4?pt=abc"' in text
    assert "LAST-MSN=10,LAST-PART=1" in text
    # Parts only near the live edge: the last 3 target durations and the open segment.
    assert "00000005.0.m4s" not in text and "00000007.0.m4s" in text
    assert '00000010.0.m4s?pt=abc",INDEPENDENT=YES' in text


def test_delta_update_skips_the_old_segments() -> None:
    full, delta = _playlist(10), _playlist(10, skip=True)
    # 20 s of segments, CAN-SKIP-UNTIL 12 s: the 4 that start before 12 s from the end.
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=4" in delta and "#EXT-X-VERSION:9" in delta
    assert "00000003.m4s" not in delta and "00000004.m4s" in delta
    assert "#EXT-X-MEDIA-SEQUENCE:0" in delta and "#EXT-X-MEDIA-SEQUENCE:0" in full
    assert delta.splitlines()[-12:] == full.splitlines()[-12:]  # the same live edge
    assert problems(delta) == [] and problems(full) == []


def test_ended_playlist_has_no_parts_nor_hint() -> None:
    text = _playlist(3, ended=True)
    assert text.rstrip().endswith("LAST-MSN=3,LAST-PART=1") and "#EXT-X-ENDLIST" in text
    assert "EXT-X-PART:" not in text and "PRELOAD-HINT" not in text
    assert problems(text) == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("DURATION=0.40000", "DURATION=0.50000"), "over PART-TARGET"),
        (("PART-HOLD-BACK=1.260", "PART-HOLD-BACK=0.500"), "PART-HOLD-BACK"),
        (("CAN-SKIP-UNTIL=12.0", "CAN-SKIP-UNTIL=4.0"), "CAN-SKIP-UNTIL"),
        (('00000009.0.m4s?pt=abc",INDEPENDENT=YES', '00000009.0.m4s?pt=abc"'), "INDEPENDENT"),
        (("00000009.2.m4s", "00000009.3.m4s"), "consecutive"),
        (("\n00000009.m4s", "\n00000011.m4s"), "expected media sequence"),
        (('00000010.2.m4s?pt=abc"\n', '00000010.4.m4s?pt=abc"\n'), "next part"),
        (("#EXT-X-PART-INF:PART-TARGET=0.420\n", ""), "PART-TARGET"),
    ],
)
def test_validator_catches_broken_rules(change: tuple[str, str], complaint: str) -> None:
    text = _playlist(10)
    assert change[0] in text
    broken = text.replace(change[0], change[1])
    assert any(complaint in p for p in problems(broken)), problems(broken)


def test_latency_mode_and_the_rungs_the_streaming_encoder_carries() -> None:
    from actors.ll_rungs import ll_renditions, wants_low_latency
    from lumalive.settings import Settings

    settings = Settings(llhls_max_height=720)
    stream = {"quality": "4K", "ai_features": {}, "bitrate": None}
    assert wants_low_latency(stream, settings)  # low is the default
    assert not wants_low_latency({**stream, "latency_mode": "normal"}, settings)
    assert not wants_low_latency(stream, Settings(llhls_max_height=0))
    # A 1080p source on a 4K stream: the pool keeps 4K (AI off: none) and 1080p.
    assert [r.name for r in ll_renditions(stream, settings, 1920, 1080, 30.0)] == [
        "720p",
        "480p",
        "360p",
    ]
    capped = Settings(llhls_max_height=720, media_max_height=480)
    assert [r.name for r in ll_renditions(stream, capped, 1920, 1080, 30.0)] == ["480p", "360p"]


# --- audio: one AAC encode, in every rendition's parts ------------------------------


def _source_aac(
    start_s: float, seconds: float, gap_at: float | None = None
) -> tuple[bytes, list[av.Packet]]:
    """A 48 kHz mono AAC tone on the timeline from `start_s`, as a publisher sends it
    over RTMP (millisecond timestamps);
    `gap_at`: 0.2 s of it missing there (a dropped run of packets)."""
    enc = av.CodecContext.create("aac", "w")
    enc.sample_rate, enc.layout, enc.format = 48_000, "mono", "fltp"
    enc.time_base = Fraction(1, 48_000)
    enc.open()
    packets: list[av.Packet] = []
    start = round(start_s * 48_000)
    for n in range(start, start + round(seconds * 48_000), 1024):
        tone = np.sin(np.arange(n, n + 1024) / 48_000 * 2 * np.pi * 440).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(0.3 * tone[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, n, Fraction(1, 48_000)
        packets += enc.encode(frame)
    packets += enc.encode(None)
    for p in packets:  # FLV's millisecond timestamps: up to 24 samples off
        p.pts = p.dts = round(p.pts / 48) * 48
    if gap_at is not None:
        packets = [p for p in packets if not gap_at <= p.pts / 48_000 < gap_at + 0.2]
    return bytes(enc.extradata or b""), packets


def _encode_with_audio(
    gap_at: float | None = None,
) -> tuple[StreamingEncoder, list[EncodedPart]]:
    """80 frames from 10 s, with the source's audio pushed as it arrives (interleaved)."""
    audio = LiveAudio(48_000, 96)
    enc = StreamingEncoder(RUNGS, PartPlan.for_rate(FPS, 2.0), preset="ultrafast", audio=audio)
    config, source = _source_aac(10.0, 3.3, gap_at)
    parts: list[EncodedPart] = []
    for i, frame in enumerate(_frames(80)):
        t = 10.0 + i / FPS
        while source and source[0].pts / 48_000 <= t:
            audio.push("aac", config, source.pop(0))
        parts += enc.push(frame, t, keyframe=i % 50 == 0)
    parts += enc.close()
    assert audio.decode_errors == 0
    return enc, parts


@pytest.fixture(scope="module")
def with_audio() -> tuple[StreamingEncoder, list[EncodedPart]]:
    return _encode_with_audio()


def _decode(data: bytes) -> tuple[list[av.VideoFrame], list[av.AudioFrame]]:
    with av.open(io.BytesIO(data)) as c:
        video = list(c.decode(video=0))
    with av.open(io.BytesIO(data)) as c:
        audio = list(c.decode(audio=0))
    return video, audio


def _contiguous(frames: list[av.AudioFrame]) -> bool:
    return all(b.pts == a.pts + a.samples for a, b in zip(frames, frames[1:], strict=False))


def test_audio_decodes_from_init_and_parts_of_every_rendition(
    with_audio: tuple[StreamingEncoder, list[EncodedPart]],
) -> None:
    enc, parts = with_audio
    for rung in RUNGS:
        assert enc.codecs[rung.name].endswith(",mp4a.40.2")
        mine = [p for p in parts if p.rendition == rung.name]
        # Still cut, timed and flagged by the video alone.
        assert [(p.segment, p.index) for p in mine] == [(0, i) for i in range(5)] + [
            (1, i) for i in range(3)
        ]
        assert all(p.duration <= enc.plan.part_target for p in mine)
        assert [p.start for p in mine if p.independent] == [10.0, 12.0]
        video, audio = _decode(enc.inits[rung.name] + b"".join(p.data for p in mine))
        assert len(video) == 80
        assert audio[0].layout.name == "stereo" and audio[0].sample_rate == 48_000
        assert _contiguous(audio)  # continuous timestamps across parts and segments
        first = float(audio[0].pts * audio[0].time_base)
        last = float((audio[-1].pts + audio[-1].samples) * audio[-1].time_base)
        assert first == pytest.approx(10.0, abs=0.1) and last >= 13.1, (first, last)
        # Not silence: the tone came through.
        assert np.abs(audio[len(audio) // 2].to_ndarray()).max() > 0.1


def test_a_segment_alone_decodes_audio_where_the_previous_left_off(
    with_audio: tuple[StreamingEncoder, list[EncodedPart]],
) -> None:
    enc, parts = with_audio
    mine = [p for p in parts if p.rendition == "90p"]
    _, whole = _decode(enc.inits["90p"] + b"".join(p.data for p in mine))
    second = b"".join(p.data for p in mine if p.segment == 1)
    _, audio = _decode(enc.inits["90p"] + second)
    assert audio and _contiguous(audio)
    assert [f.pts for f in whole[-len(audio) :]] == [f.pts for f in audio]


def test_a_gap_in_the_source_audio_stays_a_gap() -> None:
    enc, parts = _encode_with_audio(gap_at=11.0)
    _, audio = _decode(enc.inits["180p"] + b"".join(p.data for p in parts if p.rendition == "180p"))
    jumps = [b.pts - (a.pts + a.samples) for a, b in zip(audio, audio[1:], strict=False)]
    holes = [j for j in jumps if j != 0]
    assert len(holes) == 1 and 0.15 * 48_000 < holes[0] < 0.25 * 48_000, holes
    after = next(f for a, f in zip(audio, audio[1:], strict=False) if f.pts != a.pts + a.samples)
    assert float(after.pts * after.time_base) == pytest.approx(11.2, abs=0.03)
