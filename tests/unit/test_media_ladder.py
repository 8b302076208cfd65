"""Ladder rules: tier on top, nothing above the source without AI, 20K capped at 8K,
aspect kept with even sizes, and codec levels that match the size and rate."""

from __future__ import annotations

import pytest

from media.ladder import Rendition, Rung, build_ladder, h264_level, hevc_level


def sizes(renditions: tuple[Rendition, ...]) -> list[tuple[str, int, int]]:
    return [(r.name, r.width, r.height) for r in renditions]


def test_720p_source_without_ai_gets_only_rungs_at_or_below_the_source() -> None:
    renditions, reason = build_ladder(1280, 720, "1080p", ai_enhance=False, fps=25)
    assert sizes(renditions) == [("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360)]
    assert reason is None
    assert not any(r.needs_upscale for r in renditions)
    assert all(r.fps == 25 for r in renditions)
    assert [r.video_kbps for r in renditions] == [2_800, 1_400, 800]


def test_ai_enhance_adds_rungs_above_the_source_up_to_the_tier() -> None:
    renditions, _ = build_ladder(1280, 720, "4K", ai_enhance=True)
    assert [r.name for r in renditions] == ["4K", "1080p", "720p", "480p", "360p"]
    assert [r.needs_upscale for r in renditions] == [True, True, False, False, False]
    assert renditions[0].video_kbps == 25_000


def test_the_top_rung_is_the_tier() -> None:
    renditions, _ = build_ladder(7680, 4320, "1080p", ai_enhance=False)
    assert renditions[0].name == "1080p" and renditions[0].video_kbps == 8_000
    renditions, _ = build_ladder(7680, 4320, "8K", ai_enhance=False)
    assert sizes(renditions)[0] == ("8K", 7680, 4320)
    assert renditions[0].video_kbps == 50_000


def test_a_4k_tier_on_a_1080p_source_stops_at_the_source_without_ai() -> None:
    renditions, _ = build_ladder(1920, 1080, "4K", ai_enhance=False)
    assert renditions[0].name == "1080p"


def test_20k_is_capped_at_8k_with_a_reason() -> None:
    renditions, reason = build_ladder(3840, 2160, "20K", ai_enhance=True)
    assert reason == "20K exceeds every H.264/HEVC level; capped at 8K"
    assert sizes(renditions)[0] == ("8K", 7680, 4320)
    assert renditions[0].needs_upscale
    # Also unpacks by name.
    assert build_ladder(3840, 2160, "20K", ai_enhance=False).reason == reason


def test_aspect_is_kept_and_sizes_are_even() -> None:
    renditions, _ = build_ladder(1366, 768, "1080p", ai_enhance=False)
    for r in renditions:
        assert r.width % 2 == 0 and r.height % 2 == 0
        assert r.width / r.height == pytest.approx(1366 / 768, rel=0.01)
    # Ultra-wide fits the box by width: no upscale for a 1920x800 source.
    renditions, _ = build_ladder(1920, 800, "1080p", ai_enhance=False)
    assert sizes(renditions)[0] == ("1080p", 1920, 800)


def test_portrait_sources_get_portrait_renditions() -> None:
    renditions, _ = build_ladder(1080, 1920, "1080p", ai_enhance=False)
    assert sizes(renditions)[:2] == [("1080p", 1080, 1920), ("720p", 720, 1280)]


def test_a_source_below_every_rung_still_gets_one_rendition() -> None:
    renditions, _ = build_ladder(320, 240, "1080p", ai_enhance=False)
    assert sizes(renditions) == [("240p", 320, 240)]


def test_custom_rungs_and_bad_input() -> None:
    rungs = [Rung("1080p", 1920, 1080, 99_000, codec="hevc"), Rung("540p", 960, 540, 2_000)]
    renditions, _ = build_ladder(1920, 1080, "1080p", False, rungs)
    assert renditions[0].codec == "hevc"
    assert renditions[0].video_kbps == 8_000  # the tier's bitrate is a ceiling
    with pytest.raises(ValueError, match="quality tier"):
        build_ladder(1920, 1080, "16K", ai_enhance=False)
    with pytest.raises(ValueError, match="no rung"):
        build_ladder(1920, 1080, "4K", False, rungs)


@pytest.mark.parametrize(
    ("width", "height", "fps", "kbps", "level"),
    [
        (1920, 1080, 25, 9_600, "4"),
        (1920, 1080, 60, 9_600, "4.2"),
        (1280, 720, 30, 3_360, "3.1"),
        (640, 360, 30, 960, "3"),
        (3840, 2160, 30, 30_000, "5.1"),
        (7680, 4320, 30, 60_000, "6"),
    ],
)
def test_h264_levels(width: int, height: int, fps: float, kbps: int, level: str) -> None:
    assert h264_level(width, height, fps, kbps) == level


def test_20k_fits_no_level() -> None:
    with pytest.raises(ValueError, match="exceeds every H.264 level"):
        h264_level(20480, 11520, 30, 100_000)
    with pytest.raises(ValueError, match="exceeds every HEVC level"):
        hevc_level(20480, 11520, 30, 100_000)


def test_codec_strings_follow_profile_and_level() -> None:
    r1080 = Rendition("1080p", 1920, 1080, 8_000, fps=25)
    assert r1080.codecs == "avc1.640028,mp4a.40.2"
    assert Rendition("720p", 1280, 720, 2_800, fps=25).video_codec_string == "avc1.64001f"
    assert Rendition("8K", 7680, 4320, 50_000, fps=30).video_codec_string == "avc1.64003c"
    # 4K HEVC at 30 Mbit/s peak needs level 5's High tier.
    assert Rendition("4K", 3840, 2160, 25_000, codec="hevc", fps=25).video_codec_string == (
        "hvc1.1.6.H150.90"
    )
    assert r1080.bandwidth > r1080.average_bandwidth > 8_128_000
