"""Tier rules without FFmpeg: the stream's bitrate on the top rung and the ladder scaled
below it, upscale passes, the 20K tile geometry (covers the frame exactly once, every
tile within a codec level), the source window a tile is made from, and the manifests
(DASH MPD with SRD, the JSON tile map)."""

from __future__ import annotations

import io
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from actors.media_memory import media_memory_bytes
from actors.segment_publisher import SegmentPublisher
from actors.stream_ladder import stream_ladder
from lumalive.settings import Settings
from media.dash import SRD_SCHEME, MpdSegment, tile_mpd
from media.ladder import QUALITY_BITRATE_KBPS, Rendition, build_ladder
from media.levels import h264_excess, h264_level
from media.segmenter import Segmenter
from media.storage import LocalStorage
from media.tier_plan import plan, tile_set
from media.tile_renditions import cropping_hook, tile_map
from media.tiles import MIN_TILE_SIDE, TileGrid, source_window
from serve_app.renditions import planned
from tests.utils.media import synthetic

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def test_the_top_rung_is_the_tier_at_the_streams_bitrate() -> None:
    for tier, size in [("1080p", (1920, 1080)), ("4K", (3840, 2160)), ("8K", (7680, 4320))]:
        full = build_ladder(*size, tier, ai_enhance=False)
        assert full.renditions[0].video_kbps == QUALITY_BITRATE_KBPS[tier]
        low = build_ladder(*size, tier, ai_enhance=False, bitrate_kbps=2_000)
        assert (low.renditions[0].width, low.renditions[0].height) == size
        assert low.renditions[0].video_kbps == 2_000
        rates = [r.video_kbps for r in low.renditions]
        assert rates == sorted(rates, reverse=True) and max(rates[1:]) < 2_000
    # The documented ladder, scaled by stream / tier default (4,000 / 8,000 = 0.5).
    half = build_ladder(1920, 1080, "1080p", False, bitrate_kbps=4_000)
    assert [r.video_kbps for r in half.renditions] == [4_000, 1_400, 700, 400]
    with pytest.raises(ValueError, match="bitrate"):
        build_ladder(1920, 1080, "1080p", False, bitrate_kbps=9_000)


def test_upscale_passes_are_x2_each_and_only_with_ai() -> None:
    renditions, _ = build_ladder(1920, 1080, "8K", ai_enhance=True)
    passes = {r.name: (r.needs_upscale, r.upscale_passes) for r in renditions}
    assert passes["8K"] == (True, 2) and passes["4K"] == (True, 1)
    assert passes["1080p"] == (False, 0)
    without, _ = build_ladder(1920, 1080, "8K", ai_enhance=False)
    assert without[0].name == "1080p" and not any(r.needs_upscale for r in without)


def test_20k_geometry_covers_the_frame_exactly_once_within_a_level() -> None:
    tiles = tile_set(1920, 1080, "20K", ai_enhance=True, fps=30)
    assert len(tiles) == 25
    cover = np.zeros((11520, 20480), np.uint8)
    for r in tiles:
        t = r.tile
        assert t is not None and (r.width, r.height) == (4096, 2304)
        cover[t.y : t.y + t.height, t.x : t.x + t.width] += 1
        assert h264_excess(r.width, r.height, r.fps, r.maxrate_kbps) is None
        assert (
            h264_level(r.width, r.height, r.fps, r.maxrate_kbps) == "5.2"
        )  # 36,864 macroblocks at 30 fps
        assert r.needs_upscale and r.upscale_passes == 2
    assert (cover == 1).all()  # no gap, no overlap
    assert sum(r.video_kbps for r in tiles) == QUALITY_BITRATE_KBPS["20K"]
    assert tile_set(1920, 1080, "20K", ai_enhance=False) == ()  # stops at the source
    assert tile_set(1920, 1080, "8K", ai_enhance=True) == ()


@pytest.mark.parametrize(("w", "h", "tile"), [(1000, 562, (300, 300)), (1366, 768, (256, 256))])
def test_uneven_frames_are_cut_into_even_tiles(w: int, h: int, tile: tuple[int, int]) -> None:
    tiles = TileGrid.for_frame(w, h, tile).tiles()
    assert sum(t.width for t in tiles if t.row == 0) == w
    assert sum(t.height for t in tiles if t.col == 0) == h
    for t in tiles:
        assert t.width % 2 == 0 and t.height % 2 == 0
        assert min(t.width, t.height) >= MIN_TILE_SIDE and t.width <= tile[0]
    with pytest.raises(ValueError, match="even"):
        TileGrid.for_frame(1001, 562, tile)


def test_a_tile_is_cut_from_its_window_at_its_place_in_the_whole_frame() -> None:
    """The cropping hook with a plain nearest-neighbour x4 'upscaler': each tile equals
    the same region of the whole upscaled frame."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 180, 320, 3), dtype=np.uint8)
    whole = frames.repeat(4, axis=1).repeat(4, axis=2)

    def upscale(batch: np.ndarray, r: Rendition) -> np.ndarray:
        return batch.repeat(r.height // batch.shape[1], 1).repeat(r.width // batch.shape[2], 2)

    hook = cropping_hook(upscale)
    grid = TileGrid.for_frame(1280, 720, (256, 144))
    for t in grid.tiles():
        w = source_window(t, 320, 180)
        assert w.x <= t.x / 4 and t.x + t.width <= (w.x + w.width) * 4
        r = Rendition(f"t{t.row}{t.col}", t.width, t.height, 100, tile=t)
        out = hook(frames, r)
        assert out.shape == (2, t.height, t.width, 3)
        assert np.array_equal(out, whole[:, t.y : t.y + t.height, t.x : t.x + t.width])


def test_the_plan_lists_the_ladder_then_the_tiles_and_says_why() -> None:
    renditions, reason = plan(7680, 4320, "20K", True, bitrate_kbps=60_000)
    names = [r.name for r in renditions]
    assert names[:2] == ["8K", "4K"] and names[-1] == "20K_r4c4" and len(names) == 6 + 25
    assert reason is not None and "5x5 tiles of 4096x2304" in reason
    capped, reason = plan(7680, 4320, "20K", True, max_height=720)
    assert all(r.tile is None and r.height <= 720 for r in capped)
    assert reason is not None and "media_max_height" in reason
    _, reason = plan(1920, 1080, "20K", False)
    assert reason is not None and "no 20K tiles" in reason


def test_the_plan_shows_hdr_twins_and_memory_refusals_as_the_first_segment_will(
    tmp_path: Path,
) -> None:
    """Before any segment, `renditions` (basis "plan") is what the encoder path will run:
    enableHDR's HEVC twins, and no rung a worker's memory budget refuses."""
    stream: dict[str, Any] = {
        "id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "quality": "1080p",
        "bitrate": None,
        "ai_features": {"hdr": True},
    }
    full = stream_ladder(stream, Settings(data_dir=tmp_path), (1920, 1080), 30.0, lambda: "SDR")
    # A budget that holds every rung but the top one (the lowest-rung lane is on by default).
    needs = media_memory_bytes(full.renditions[1:], False, source=(1920, 1080), lane=True)
    settings = Settings(data_dir=tmp_path, media_worker_memory_mb=-(-needs // (1 << 20)))
    plan_ = planned(stream, settings)
    items = {i["name"]: i for i in plan_["items"]}
    assert "1080p" not in items and "1080p (1920x1080) refused" in plan_["reason"]
    assert [n for n in items if n.endswith("-hdr")] == [
        "1080p-hdr",
        "720p-hdr",
        "480p-hdr",
        "360p-hdr",
    ]
    assert items["1080p-hdr"]["codec"] == "hevc" and items["1080p-hdr"]["codecs"].startswith(
        "hvc1."
    )
    assert "HLG" in plan_["reason"]
    # The encoder path on a real 1080p SDR segment: the same renditions.
    clip = synthetic(frames=1, gop=1, size=(1920, 1080), fps=30, audio=False)
    [segment] = list(Segmenter(io.BytesIO(clip), format="flv"))
    publisher = SegmentPublisher(
        stream, settings, cast(Any, None), on_not_live=lambda: None, storage=LocalStorage(tmp_path)
    )
    encoded = publisher.ladder(segment)
    assert [(r.name, r.width, r.video_kbps, r.codecs) for r in encoded] == [
        (i["name"], i["width"], i["video_kbps"], i["codecs"]) for i in plan_["items"]
    ]
    assert {r.video_range for r in encoded if r.name.endswith("-hdr")} == {"HLG"}


def _tiles_and_ladder() -> tuple[tuple[Rendition, ...], tuple[Rendition, ...]]:
    renditions, _ = plan(7680, 4320, "20K", True)
    return (
        tuple(r for r in renditions if r.tile is None),
        tuple(r for r in renditions if r.tile is not None),
    )


def test_the_mpd_places_every_tile_by_srd_over_one_timeline() -> None:
    ladder, tiles = _tiles_and_ladder()
    start = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    segments = [MpdSegment(n, 0.5 + 2 * i, 2.0) for i, n in enumerate(range(7, 10))]
    xml = tile_mpd(
        ladder,
        tiles,
        segments,
        live=True,
        availability_start=start,
        published=start + timedelta(seconds=8),
        media_uri="../hls/{name}/$Number%08d$.ts",
        uri_suffix="?pt=a&b",
    )
    mpd = ET.fromstring(xml)
    assert mpd.get("type") == "dynamic" and mpd.get("availabilityStartTime") == (
        "2026-11-27T12:00:00.000Z"
    )
    sets = mpd.findall("d:Period/d:AdaptationSet", NS)
    assert len(sets) == 1 + 25
    srds = [s.find("d:SupplementalProperty", NS) for s in sets]
    assert all(p is not None and p.get("schemeIdUri") == SRD_SCHEME for p in srds)
    assert srds[0] is not None and srds[0].get("value") == "0,0,0,20480,11520,20480,11520"
    assert srds[7] is not None and srds[7].get("value") == "0,4096,2304,4096,2304,20480,11520"
    assert len(sets[0].findall("d:Representation", NS)) == len(ladder)
    for s in sets:
        for rep in s.findall("d:Representation", NS):
            template = rep.find("d:SegmentTemplate", NS)
            assert template is not None and template.get("startNumber") == "7"
            assert template.get("media") == f"../hls/{rep.get('id')}/$Number%08d$.ts?pt=a&b"
            ts = [(s.get("t"), s.get("d")) for s in template.findall("d:SegmentTimeline/d:S", NS)]
            assert ts == [("500", "2000"), ("2500", "2000"), ("4500", "2000")]
    ended = ET.fromstring(
        tile_mpd(ladder, tiles, segments, live=False, availability_start=start, published=start)
    )
    assert ended.get("type") == "static" and ended.get("mediaPresentationDuration") == "PT6.500S"


@pytest.mark.parametrize("media_start_s", [10.5, 0.2])
def test_cmaf_tiles_are_referenced_with_their_init_on_the_ladders_timeline(
    media_start_s: float,
) -> None:
    """fMP4 tiles: an ISOBMFF AdaptationSet with `initialization`, whose media times (the
    source clock, ahead of or behind the wall clock) map onto the TS ladder's times."""
    ladder, tiles = _tiles_and_ladder()
    start = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    segments = [MpdSegment(n, 0.5 + 2 * i, 2.0) for i, n in enumerate(range(7, 10))]
    mpd = ET.fromstring(
        tile_mpd(
            ladder,
            tiles,
            segments,
            live=True,
            availability_start=start,
            published=start,
            uri_suffix="?pt=a",
            fmp4={t.name for t in tiles},
            media_start_s=media_start_s,
        )
    )
    assert set(mpd.get("profiles", "").split(",")) == {
        "urn:mpeg:dash:profile:isoff-live:2011",
        "urn:mpeg:dash:profile:mp2t-simple:2011",
    }
    period = mpd.find("d:Period", NS)
    assert period is not None
    period_s = float(period.get("start", "PT0S")[2:-1])
    sets = period.findall("d:AdaptationSet", NS)
    assert [s.get("mimeType") for s in sets] == ["video/mp2t"] + ["video/mp4"] * 25
    for s in (sets[0], sets[7]):
        for rep in s.findall("d:Representation", NS):
            template = rep.find("d:SegmentTemplate", NS)
            assert template is not None
            name, cmaf = rep.get("id"), s is sets[7]
            assert template.get("media") == f"{name}/$Number%08d$.{'m4s' if cmaf else 'ts'}?pt=a"
            assert template.get("initialization") == (f"{name}/init.mp4?pt=a" if cmaf else None)
            pto = int(template.get("presentationTimeOffset", "0"))
            first = int(template.findall("d:SegmentTimeline/d:S", NS)[0].get("t", ""))
            # Presentation time of the first segment: 0.5 s after the MPD's start for all.
            assert period_s + (first - pto) / 1000 == pytest.approx(0.5)
            if cmaf:  # ... and its S@t is the segment's media time
                assert first / 1000 == pytest.approx(media_start_s)


def test_the_tile_map_names_each_tiles_place_and_playlist() -> None:
    _, tiles = _tiles_and_ladder()
    m = tile_map(tiles, playlist_uri="../hls/{name}/index.m3u8", links={"master": "m.m3u8"})
    assert m["frame"] == {"width": 20480, "height": 11520} and m["grid"] == {"cols": 5, "rows": 5}
    assert m["master"] == "m.m3u8"
    entries = m["tiles"]
    assert isinstance(entries, list) and len(entries) == 25
    assert entries[6]["x"] == 4096 and entries[6]["playlist"] == "../hls/20K_r1c1/index.m3u8"
