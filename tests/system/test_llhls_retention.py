"""Retention of LL-HLS media (sql/0012 `expire_ll_media`, through the real
`RetentionSweeper`): an LL segment that leaves a live stream's DVR window goes with its
parts, rows and objects; an ended stream's LL media goes with its VOD; DELETE of a
stream takes its LL rows and objects.

Rows are written as the live encoder writes them (`lumalive.store.llhls`, acting as
the owner), objects stored under its keys. As in test_retention.py, windows are days
long and the media weeks old, so a sweep in the shared session takes only these."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest

from actors.retention import RetentionSweeper, postgres_expiry
from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.store import llhls
from lumalive.store.llhls import expire_ll_media
from media.llhls.parts import init_name, part_name, segment_name
from media.object_storage import open_storage
from tests.system.test_retention import _admin
from tests.utils.api import Person

pytestmark = pytest.mark.slow

BASE = "/api/live-streaming"
WEEKS_AGO = time.time() - 21 * 86400
RUNG = llhls.NewLlRendition(
    "360p", 0, 640, 360, 25.0, 900_000, 800_000, "avc1.64001e,mp4a.40.2", 0.42, 4
)


async def _ll_media(
    db: Database, settings: Settings, owner: Person, sid: str, walls: list[float]
) -> dict[int, list[str]]:
    """One LL segment of two parts per wall clock, as the live encoder stores them: its
    objects first, then its rows. The keys of each segment (its parts' and its own)."""
    storage = open_storage(settings.media_store_url)
    key = lambda name: f"{sid}/ll/360p/{name}"  # noqa: E731
    storage.put(key(init_name(0)), b"init")
    keys: dict[int, list[str]] = {}
    parts, segments = [], []
    for seq, wall in enumerate(walls):
        pdt = datetime.fromtimestamp(wall, UTC)
        keys[seq] = [key(part_name(seq, i)) for i in range(2)] + [key(segment_name(seq))]
        for k in keys[seq]:
            storage.put(k, b"media")
        parts += [
            llhls.NewPart("360p", seq, i, 0, 0.4, i == 0, 5, keys[seq][i], pdt) for i in range(2)
        ]
        segments.append(
            llhls.NewLlSegment(
                "360p", seq, 0, 0.8, 10, keys[seq][2], key(init_name(0)), False, 0, pdt
            )
        )
    async with db.acting(owner.id) as conn:
        await llhls.add_renditions(conn, UUID(sid), [RUNG])
        await llhls.add_segments(conn, UUID(sid), segments)
        await llhls.add_parts(conn, UUID(sid), parts)
    return keys


def _ll_rows(settings: Settings, sid: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        t: _admin(settings, f"SELECT sequence FROM {t} WHERE stream_id = %s ORDER BY 1", sid)
        for t in ("ll_segments", "ll_parts")
    }


async def test_ll_media_leaves_with_the_dvr_window_then_the_vod(
    client: httpx.AsyncClient, db: Database, settings: Settings, make_user: Any, make_stream: Any
) -> None:
    owner = await make_user("lldvr")
    stream = await make_stream(owner, start=True)
    sid = stream["id"]
    keys = await _ll_media(db, settings, owner, sid, [WEEKS_AGO] * 3 + [time.time()])
    storage = open_storage(settings.media_store_url)

    # A week's DVR window; the newest 2 LL segments (the LL playlist's window, here)
    # stay whatever their age.
    windows = {"live_window_segments": 2, "llhls_window_segments": 2}
    dvr = settings.model_copy(update={"dvr_window_s": 7 * 86400, **windows})
    swept = await RetentionSweeper(dvr, postgres_expiry(dvr, db), storage).sweep()
    assert swept.segments == 6, swept  # segments 0 and 1, and their two parts each
    assert _ll_rows(settings, sid) == {
        "ll_segments": [(2,), (3,)],
        "ll_parts": [(2,), (2,), (3,), (3,)],
    }
    for seq, ks in keys.items():
        assert all(storage.exists(k) == (seq >= 2) for k in ks), seq
    r = await client.get(f"{BASE}/{sid}/llhls/360p/index.m3u8", headers=owner.auth)
    assert r.status_code == 200 and "#EXT-X-MEDIA-SEQUENCE:2" in r.text, r.text
    assert "00000001" not in r.text

    # Ended three weeks ago, a two-week VOD lifetime: its LL media goes too.
    r = await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text
    _admin(
        settings, "UPDATE live_streams SET ended_at = now() - interval '20 days' WHERE id = %s", sid
    )
    vod = settings.model_copy(update={"vod_retention_days": 14})
    swept = await RetentionSweeper(vod, postgres_expiry(vod, db), storage).sweep()
    assert swept.vods >= 1
    assert _ll_rows(settings, sid) == {"ll_segments": [], "ll_parts": []}
    assert _admin(settings, "SELECT 1 FROM ll_renditions WHERE stream_id = %s", sid) == []
    assert not any(storage.exists(k) for ks in keys.values() for k in ks)
    assert not storage.exists(f"{sid}/ll/360p/{init_name(0)}")


async def test_delete_takes_the_ll_rows_and_objects(
    client: httpx.AsyncClient, db: Database, settings: Settings, make_user: Any, make_stream: Any
) -> None:
    owner = await make_user("lldelete")
    stream = await make_stream(owner, start=True)
    sid = stream["id"]
    keys = await _ll_media(db, settings, owner, sid, [time.time()] * 2)
    storage = open_storage(settings.media_store_url)
    r = await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text
    r = await client.delete(f"{BASE}/{sid}", headers=owner.auth)
    assert r.status_code == 204, r.text
    for table in ("ll_renditions", "ll_segments", "ll_parts"):
        assert _admin(settings, f"SELECT 1 FROM {table} WHERE stream_id = %s", sid) == []
    assert not any(storage.exists(k) for ks in keys.values() for k in ks)


async def test_only_the_sweep_may_expire_ll_media(db: Database, make_user: Any) -> None:
    user = await make_user("llsweeper")
    async with db.acting(user.id) as conn:
        with pytest.raises(Exception, match="retention sweep"):
            await expire_ll_media(
                conn, dvr_window_s=1, keep_last=1, vod_retention_days=1, max_rows=10
            )
