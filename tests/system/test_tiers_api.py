"""Tiers in the running system: a stream's `renditions` before and during live, the
stream's own bitrate in its encoded ladder, and a 20K stream's tile manifests (the
tile map and the DASH MPD) served with HLS's privacy.

The session caps the ladder at 480p (conftest), so a real publish here gives 480p and
360p; the 20K rows are written by the real `SegmentPublisher` from a 20K plan (no 20K
encode in CI: tests/unit/test_tiers_media.py encodes the tile path on a small grid).
"""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors.media_worker import EncodedRendition, SegmentOutcome, SegmentResult
from actors.segment_publisher import Cut, SegmentPublisher
from lumalive.db import Database
from lumalive.settings import Settings
from media.segmenter import SourceSegment
from media.storage import LocalStorage
from tests.system.test_media_e2e import finished, publish, wait_live, wait_processed
from tests.utils.api import assert_error

pytestmark = pytest.mark.slow

MPD_NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def names(renditions: dict[str, Any]) -> list[str]:
    return [r["name"] for r in renditions["items"]]


async def test_renditions_are_the_plan_before_live_and_the_ladder_after(
    client: httpx.AsyncClient, make_user: Any, settings: Settings, db: Database
) -> None:
    owner = await make_user("tiers")
    body = {"title": "t", "quality": "1080p", "bitrate": 4_000}
    r = await client.post("/api/live-streaming/create", json=body, headers=owner.auth)
    assert r.status_code == 201, r.text
    stream = r.json()
    sid = stream["id"]
    plan = stream["renditions"]
    # The plan: a 1080p source's ladder at half the tier's rate, under the session's cap.
    assert plan["basis"] == "plan" and "media_max_height" in plan["reason"]
    assert [(i["name"], i["video_kbps"], i["frame_rate"]) for i in plan["items"]] == [
        ("480p", 700, None),
        ("360p", 400, None),
    ]
    anonymous = (await client.get(f"/api/live-streaming/{sid}")).json()
    assert anonymous["renditions"] == plan

    publisher = await publish(settings, stream["stream_key"], realtime=False)
    await wait_live(client, owner, sid)
    code, err = await finished(publisher)
    assert code == 0, err
    await wait_processed(db, owner, sid, 1)

    live = (await client.get(f"/api/live-streaming/{sid}")).json()["renditions"]
    assert live["basis"] == "encoded"
    assert [(i["name"], i["width"], i["height"]) for i in live["items"]] == [
        ("480p", 854, 480),
        ("360p", 640, 360),
    ]
    for item in live["items"]:
        assert item["frame_rate"] == pytest.approx(25) and item["codecs"].startswith("avc1.")
        assert not item["needs_upscale"] and item["tile"] is None
    # The stream's lower bitrate is what the ladder was encoded at.
    assert [i["video_kbps"] for i in live["items"]] == [700, 400]
    listed = (await client.get("/api/live-streaming/live", params={"limit": 100})).json()
    [mine] = [s for s in listed["items"] if s["id"] == sid]
    assert mine["renditions"] == live
    # Not 20K: no tiles, and it says so.
    assert_error(
        await client.get(f"/api/live-streaming/{sid}/tiles/tiles.json"), 404, "tiles_not_available"
    )
    r = await client.post(f"/api/live-streaming/end/{sid}", headers=owner.auth)
    assert r.status_code == 200 and r.json()["renditions"] == live


async def test_an_hdr_streams_plan_lists_its_hevc_twins(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any
) -> None:
    """enableHDR before the first segment: the plan has what the encoder will make, an
    HEVC twin of each rung (HLG, as for an SDR source), under the session's 480p cap."""
    owner = await make_user("hdr-plan")
    stream = await make_stream(owner, quality="1080p", enableHDR=True)
    plan = (await client.get(f"/api/live-streaming/{stream['id']}", headers=owner.auth)).json()
    plan = plan["renditions"]
    assert plan["basis"] == "plan" and "HLG" in plan["reason"]
    assert [(i["name"], i["codec"]) for i in plan["items"]] == [
        ("480p", "h264"),
        ("360p", "h264"),
        ("480p-hdr", "hevc"),
        ("360p-hdr", "hevc"),
    ]


async def test_a_20k_stream_lists_its_tiles_and_serves_their_manifests(
    client: httpx.AsyncClient,
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    db: Database,
    tmp_path: Path,
) -> None:
    owner, stranger = await make_user("tiled"), await make_user("stranger")
    stream = await make_stream(
        owner, start=True, quality="20K", enableAI=True, bitrate=60_000, privacy="private"
    )
    sid = uuid.UUID(stream["id"])
    assert stream["renditions"]["basis"] == "plan"
    await _publish_20k_segment(stream, settings, db, tmp_path)

    got = (await client.get(f"/api/live-streaming/{sid}", headers=owner.auth)).json()
    renditions = got["renditions"]
    assert renditions["basis"] == "encoded" and "5x5 tiles of 4096x2304" in renditions["reason"]
    tiles = [i for i in renditions["items"] if i["tile"] is not None]
    assert names(renditions)[0] == "8K" and len(tiles) == 25
    assert tiles[7]["tile"] == {
        "row": 1,
        "col": 2,
        "x": 8192,
        "y": 2304,
        "frame_width": 20480,
        "frame_height": 11520,
    }
    assert all(t["needs_upscale"] and t["upscale_passes"] == 2 for t in tiles)

    base = f"/api/live-streaming/{sid}"
    tile_map = await client.get(f"{base}/tiles/tiles.json", headers=owner.auth)
    assert tile_map.status_code == 200, tile_map.text
    m = tile_map.json()
    assert m["grid"] == {"cols": 5, "rows": 5} and len(m["tiles"]) == 25
    assert m["tiles"][7]["playlist"].startswith("../hls/20K_r1c2/index.m3u8?pt=")
    assert m["master"].startswith("../hls/master.m3u8?pt=")
    # A tile's playlist is HLS's, behind the same token; the master lists no tile.
    pt = {"pt": m["master"].split("pt=")[1]}
    index = await client.get(f"{base}/hls/20K_r1c2/index.m3u8", params=pt)
    assert index.status_code == 200 and "00000000.m4s?pt=" in index.text  # CMAF tiles
    assert '#EXT-X-MAP:URI="init.mp4?pt=' in index.text
    master = await client.get(f"{base}/hls/master.m3u8", params=pt)
    assert "RESOLUTION=7680x4320" in master.text and "20K_" not in master.text

    mpd = await client.get(f"{base}/tiles/manifest.mpd", params=pt)
    assert mpd.status_code == 200 and mpd.headers["content-type"] == "application/dash+xml"
    root = ET.fromstring(mpd.text)
    assert root.get("type") == "dynamic"
    sets = root.findall("d:Period/d:AdaptationSet", MPD_NS)
    srd = [s.find("d:SupplementalProperty", MPD_NS) for s in sets]
    assert len(sets) == 26 and all(p is not None for p in srd)
    assert srd[8] is not None and srd[8].get("value") == "0,8192,2304,4096,2304,20480,11520"
    # The ladder MPEG-TS, the tiles CMAF: each with its init segment beside its media.
    assert [s.get("mimeType") for s in sets] == ["video/mp2t"] + ["video/mp4"] * 25
    template = sets[8].find("d:Representation/d:SegmentTemplate", MPD_NS)
    assert template is not None
    assert (template.get("initialization") or "").startswith("../hls/20K_r1c2/init.mp4?pt=")
    assert (template.get("media") or "").startswith("../hls/20K_r1c2/$Number%08d$.m4s?pt=")

    for path in ("tiles/tiles.json", "tiles/manifest.mpd"):
        assert_error(await client.get(f"{base}/{path}", headers=stranger.auth), 404)
        assert_error(await client.get(f"{base}/{path}"), 404, "stream_not_found")


async def _publish_20k_segment(
    stream: dict[str, Any], settings: Settings, db: Database, tmp_path: Path
) -> None:
    """One published segment of a 20K plan's renditions, through the real publisher
    (without the session's 480p cap), as the pipeline would publish the workers' output."""
    uncapped = settings.model_copy(update={"media_max_height": None})
    row = {**stream, "id": uuid.UUID(stream["id"]), "user_id": uuid.UUID(stream["user_id"])}
    publisher = SegmentPublisher(
        row, uncapped, db, on_not_live=lambda: None, storage=LocalStorage(tmp_path)
    )
    source = SourceSegment(0, 10.0, 2.0, b"", "h264", 1920, 1080, 25.0, True, 1, 50)
    renditions = publisher.ladder(source)
    stored = tuple(
        EncodedRendition(
            r.name,
            f"{row['id']}/{r.name}/00000000.{'ts' if r.tile is None else 'm4s'}",
            1_000,
            2.0,
            50,
            r.width,
            r.height,
            r.codecs,
        )
        for r in renditions
    )
    now = time.time()
    verdict = await publisher.publish(
        Cut(source, now, now - 2.0), SegmentOutcome(SegmentResult(0, stored))
    )
    assert verdict is not None and publisher.published == 1
