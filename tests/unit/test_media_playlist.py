"""HLS text: the tags RFC 8216 requires, relative URIs, signed suffixes, live windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from media.ladder import build_ladder
from media.playlist import (
    LivePlaylist,
    SegmentRecord,
    master_playlist,
    media_playlist,
    segment_name,
    with_suffix,
)

T0 = datetime(2025, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


def record(seq: int, duration: float = 2.0, discontinuity: bool = False) -> SegmentRecord:
    return SegmentRecord(
        sequence=seq,
        uri=segment_name(seq),
        duration=duration,
        size=1000,
        program_date_time=T0 + timedelta(seconds=2 * seq),
        discontinuity=discontinuity,
    )


def test_media_playlist_has_the_required_tags() -> None:
    text = media_playlist(
        [record(7), record(8, 2.4), record(9, 1.2, discontinuity=True)], ended=True
    )
    lines = text.splitlines()
    assert lines[:4] == [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-TARGETDURATION:3",  # ceil(2.4)
        "#EXT-X-MEDIA-SEQUENCE:7",
    ]
    assert lines.count("#EXT-X-DISCONTINUITY") == 1
    # The discontinuity tag sits right before the reconnected segment's own tags.
    i = lines.index("#EXT-X-DISCONTINUITY")
    assert lines[i + 1] == "#EXT-X-PROGRAM-DATE-TIME:2025-01-02T03:04:23.678Z"
    assert lines[i + 3] == "00000009.ts"
    assert "#EXT-X-PROGRAM-DATE-TIME:2025-01-02T03:04:19.678Z" in lines
    assert "#EXTINF:2.40000," in lines
    assert lines[-1] == "#EXT-X-ENDLIST"
    assert "#EXT-X-ENDLIST" not in media_playlist([record(0)])


def test_uri_suffix_is_appended_to_each_relative_uri() -> None:
    text = media_playlist([record(0), record(1)], uri_suffix="?exp=99&sig=abc")
    uris = [line for line in text.splitlines() if not line.startswith("#")]
    assert uris == ["00000000.ts?exp=99&sig=abc", "00000001.ts?exp=99&sig=abc"]
    assert with_suffix("a.ts?x=1", "?sig=2") == "a.ts?x=1&sig=2"
    assert with_suffix("a.ts", "") == "a.ts"


def test_target_duration_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="target duration"):
        media_playlist([record(0, 4.0)], target_duration=2)


def test_live_window_slides_and_keeps_its_counters() -> None:
    live = LivePlaylist(window=3)
    live.append(record(0, 3.5))
    live.append(record(1, discontinuity=True))
    for seq in range(2, 6):
        live.append(record(seq))
    text = live.render()
    assert "#EXT-X-MEDIA-SEQUENCE:3" in text
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in text  # segment 1 slid out
    assert "#EXT-X-TARGETDURATION:4" in text  # never shrinks after 3.5 s left
    assert "#EXT-X-PLAYLIST-TYPE" not in text
    with pytest.raises(ValueError, match="not after"):
        live.append(record(5))
    live.end()
    assert live.render().endswith("#EXT-X-ENDLIST\n")
    with pytest.raises(ValueError, match="ended"):
        live.append(record(6))


def test_event_playlist_keeps_everything() -> None:
    live = LivePlaylist(window=None)
    for seq in range(10):
        live.append(record(seq))
    text = live.render()
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text
    assert text.count("#EXTINF") == 10


def test_master_playlist_describes_each_rendition() -> None:
    renditions, _ = build_ladder(1920, 1080, "1080p", ai_enhance=False, fps=25)
    text = master_playlist(renditions, uri_suffix="?sig=1")
    lines = text.splitlines()
    assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    top = lines[3]
    assert top.startswith("#EXT-X-STREAM-INF:")
    for attribute in (
        f"BANDWIDTH={renditions[0].bandwidth}",
        f"AVERAGE-BANDWIDTH={renditions[0].average_bandwidth}",
        "RESOLUTION=1920x1080",
        "FRAME-RATE=25.000",
        'CODECS="avc1.640028,mp4a.40.2"',
    ):
        assert attribute in top
    assert lines[4] == "1080p/index.m3u8?sig=1"
    assert text.count("#EXT-X-STREAM-INF") == len(renditions)


def test_master_playlist_codec_overrides_and_video_only() -> None:
    renditions, _ = build_ladder(640, 360, "1080p", ai_enhance=False, fps=30)
    text = master_playlist(renditions, has_audio=False, playlist_uri="v/{name}.m3u8")
    assert 'CODECS="avc1.64001e"' in text and "v/360p.m3u8" in text
    text = master_playlist(renditions, codecs={"360p": "avc1.4d401e,mp4a.40.2"})
    assert 'CODECS="avc1.4d401e,mp4a.40.2"' in text
