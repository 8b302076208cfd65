"""Retention end to end, on the session's `file://` store and on a real S3-API server
(moto's): segments published by the real `SegmentPublisher` into the session's
Postgres, expired by `expire_media` (sql/0009) through the real `RetentionSweeper`
with a test-local Settings override, played back through the API; and DELETE of a
stream, which takes its rows and its objects.

The DVR window and VOD lifetime here are days long and the segments' wall clocks
(and an ended stream's `ended_at`) are set weeks back, so a sweep in this shared
session can only ever take this module's own streams.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from actors.media_worker import (
    ModerationResult,
    SegmentJob,
    SegmentOutcome,
    SegmentResult,
    SegmentWorker,
    segment_key,
)
from actors.retention import RetentionSweeper, postgres_expiry
from actors.segment_publisher import Cut, SegmentPublisher
from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.store.retention import expire_media
from media.object_storage import open_storage
from media.segmenter import Segmenter, SourceSegment
from media.storage import SegmentStorage
from serve_app.app import create_app
from tests.utils.api import Person, assert_error
from tests.utils.media import CLIP
from tests.utils.s3 import s3_environment

pytestmark = pytest.mark.slow

BASE = "/api/live-streaming"
WEEKS_AGO = time.time() - 21 * 86400


@pytest.fixture(scope="module")
def bucket_url() -> Iterator[str]:
    with s3_environment() as env:
        yield f"s3://{env['AWS_S3_BUCKET']}/media"


@dataclasses.dataclass
class Store:
    """One kind of segment store: the settings that name it, and an API that serves it."""

    settings: Settings
    api: httpx.AsyncClient
    encoded: tuple[SegmentResult, dict[str, bytes]] | None = None  # see `_encode`

    @property
    def storage(self) -> SegmentStorage:
        return open_storage(self.settings.media_store_url)


@pytest.fixture(params=["file", "s3"])
async def store(
    request: pytest.FixtureRequest, settings: Settings, client: httpx.AsyncClient
) -> AsyncIterator[Store]:
    """`file`: the session's system as it runs. `s3`: the API app with the bucket as its
    store, served in process (the session's Ray cluster keeps its disk)."""
    if request.param == "file":
        yield Store(settings, client)
        return
    s3 = settings.model_copy(update={"media_url": request.getfixturevalue("bucket_url")})
    app = create_app(s3)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as api:
        yield Store(s3, api)
    if app.state.replica is not None:
        await app.state.replica.close()


@pytest.fixture(scope="module")
def source() -> SourceSegment:
    with CLIP.open("rb") as f:
        return next(iter(Segmenter(io.BytesIO(f.read()), format="mp4")))


def _libpq(url: str | None) -> str:
    return (url or "").replace("postgresql+psycopg://", "postgresql://", 1)


def _admin(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """As the schema owner (no RLS): what is really stored."""
    with psycopg.connect(_libpq(settings.database_url)) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _publisher(stream: dict[str, Any], owner: Person, store: Store, db: Database) -> Any:
    row = {**stream, "id": UUID(stream["id"]), "user_id": owner.id}
    return SegmentPublisher(row, store.settings, db, on_not_live=lambda: None)


def _encode(publisher: Any, store: Store, source: SourceSegment, sequence: int) -> SegmentResult:
    """The clip's first segment as source segment `sequence`: encoded once per store
    (the worker's real output), copied to each further sequence's keys."""
    ladder = publisher.ladder(source)  # fixes the publisher's ladder, as the pipeline does
    if store.encoded is None:
        job = SegmentJob(str(publisher.stream_id), 0, ladder, source.frames, 0)
        done = SegmentWorker(store.settings).process(job, source.data)
        assert done.error is None
        store.encoded = done, {e.name: store.storage.get(e.key) for e in done.renditions}
    done, data = store.encoded
    renditions = []
    for e in done.renditions:
        key = segment_key(str(publisher.stream_id), e.name, sequence)
        store.storage.put(key, data[e.name])
        renditions.append(dataclasses.replace(e, key=key))
    return dataclasses.replace(done, source_sequence=sequence, renditions=tuple(renditions))


async def _publish(
    publisher: Any, store: Store, source: SourceSegment, sequence: int, wall_start: float, **kw: Any
) -> tuple[Any, list[str]]:
    result = dataclasses.replace(_encode(publisher, store, source, sequence), **kw)
    cut = Cut(dataclasses.replace(source, sequence=sequence), time.time(), wall_start)
    return await publisher.publish(cut, SegmentOutcome(result)), [r.key for r in result.renditions]


def _sequences(settings: Settings, sid: str) -> list[int]:
    rows = _admin(
        settings,
        "SELECT sequence FROM stream_segments WHERE stream_id = %s AND rendition = '360p'"
        " ORDER BY sequence",
        sid,
    )
    return [r[0] for r in rows]


async def test_a_live_stream_loses_what_leaves_its_dvr_window(
    store: Store,
    client: httpx.AsyncClient,
    db: Database,
    make_user: Any,
    make_stream: Any,
    source: SourceSegment,
) -> None:
    owner = await make_user("dvr")
    live = await make_stream(owner, start=True)
    ended = await make_stream(owner, start=True)
    publisher = _publisher(live, owner, store, db)
    keys = []
    for seq in range(5):  # 0-3 weeks old, 4 just now
        _, k = await _publish(publisher, store, source, seq, WEEKS_AGO if seq < 4 else time.time())
        keys.append(k)
    other = _publisher(ended, owner, store, db)
    _, ended_keys = await _publish(other, store, source, 0, WEEKS_AGO)
    r = await client.post(f"{BASE}/end/{ended['id']}", headers=owner.auth)
    assert r.status_code == 200, r.text

    # A week's DVR window; the live window (kept whatever its age) is the last 2.
    dvr = store.settings.model_copy(update={"dvr_window_s": 7 * 86400, "live_window_segments": 2})
    swept = await RetentionSweeper(dvr, postgres_expiry(dvr, db), store.storage).sweep()

    assert _sequences(dvr, live["id"]) == [3, 4]  # 3 is old, but in the live window
    assert swept.segments == 6 and swept.vods == 0  # 0-2, two renditions each
    for seq, ks in enumerate(keys):
        assert all(store.storage.exists(k) == (seq >= 3) for k in ks), seq
    # The ended stream (DVR applies while live; its VOD is kept forever) is untouched.
    assert _sequences(dvr, ended["id"]) == [0]
    assert all(store.storage.exists(k) for k in ended_keys)

    r = await store.api.get(f"{BASE}/{live['id']}/hls/360p/index.m3u8", headers=owner.auth)
    assert r.status_code == 200, r.text
    assert "#EXT-X-MEDIA-SEQUENCE:3" in r.text
    assert [x.split("?")[0] for x in r.text.splitlines() if x.startswith("0000")] == [
        "00000003.ts",
        "00000004.ts",
    ]
    r = await store.api.get(f"{BASE}/{live['id']}/hls/360p/00000000.ts", headers=owner.auth)
    assert r.status_code == 404
    r = await store.api.get(f"{BASE}/{live['id']}/hls/360p/00000003.ts", headers=owner.auth)
    assert r.status_code == 200 and len(r.content) > 0
    r = await client.post(f"{BASE}/end/{live['id']}", headers=owner.auth)
    assert r.status_code == 200, r.text


async def test_an_ended_streams_vod_expires_after_its_retention(
    store: Store,
    client: httpx.AsyncClient,
    db: Database,
    make_user: Any,
    make_stream: Any,
    source: SourceSegment,
) -> None:
    owner = await make_user("vod")
    old, recent = await make_stream(owner, start=True), await make_stream(owner, start=True)
    _, old_keys = await _publish(_publisher(old, owner, store, db), store, source, 0, WEEKS_AGO)
    _, new_keys = await _publish(_publisher(recent, owner, store, db), store, source, 0, WEEKS_AGO)
    for s in (old, recent):
        r = await client.post(f"{BASE}/end/{s['id']}", headers=owner.auth)
        assert r.status_code == 200, r.text
    _admin(
        store.settings,
        "UPDATE live_streams SET ended_at = now() - interval '20 days' WHERE id = %s",
        old["id"],
    )
    vod = store.settings.model_copy(update={"vod_retention_days": 14})
    swept = await RetentionSweeper(vod, postgres_expiry(vod, db), store.storage).sweep()

    assert swept.vods == 1
    assert _sequences(vod, old["id"]) == [] and _sequences(vod, recent["id"]) == [0]
    assert not any(store.storage.exists(k) for k in old_keys)
    assert all(store.storage.exists(k) for k in new_keys)
    r = await store.api.get(f"{BASE}/{old['id']}", headers=owner.auth)
    assert r.status_code == 200  # the stream itself stays; only its media expired


async def test_delete_removes_an_ended_streams_rows_and_objects(
    store: Store,
    client: httpx.AsyncClient,
    db: Database,
    make_user: Any,
    make_stream: Any,
    source: SourceSegment,
) -> None:
    owner, stranger = await make_user("deleter"), await make_user("stranger")
    stream = await make_stream(owner, start=True)
    sid = stream["id"]
    _, keys = await _publish(_publisher(stream, owner, store, db), store, source, 0, time.time())
    assert all(store.storage.exists(k) for k in keys)

    assert_error(await store.api.delete(f"{BASE}/{sid}", headers=owner.auth), 409, "stream_is_live")
    r = await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text
    assert_error(
        await store.api.delete(f"{BASE}/{sid}", headers=stranger.auth), 404, "stream_not_found"
    )
    assert all(store.storage.exists(k) for k in keys)  # the stranger changed nothing

    r = await store.api.delete(f"{BASE}/{sid}", headers=owner.auth)
    assert r.status_code == 204, r.text
    assert not any(store.storage.exists(k) for k in keys)
    for table in ("live_streams", "stream_renditions", "stream_segments", "stream_quality"):
        column = "id" if table == "live_streams" else "stream_id"
        assert _admin(store.settings, f"SELECT 1 FROM {table} WHERE {column} = %s", sid) == []
    assert_error(await store.api.get(f"{BASE}/{sid}", headers=owner.auth), 404)
    assert_error(await store.api.delete(f"{BASE}/{sid}", headers=owner.auth), 404)


async def test_unpublished_segments_leave_no_objects(
    store: Store,
    client: httpx.AsyncClient,
    db: Database,
    make_user: Any,
    make_stream: Any,
    source: SourceSegment,
) -> None:
    owner = await make_user("orphans")
    stream = await make_stream(owner, start=True)
    publisher = _publisher(stream, owner, store, db)
    # Withheld by moderation (a privacy matter: it must not stay readable anywhere).
    nsfw = ModerationResult(frames_scored=1, scores=(0.99,), model="test")
    verdict, withheld = await _publish(publisher, store, source, 0, time.time(), moderation=nsfw)
    assert verdict is not None and verdict.end
    assert not any(store.storage.exists(k) for k in withheld)
    # Its publish failed: nothing committed, so nothing kept.
    failed = _encode(publisher, store, source, 1)
    assert all(store.storage.exists(e.key) for e in failed.renditions)
    cut = Cut(dataclasses.replace(source, sequence=1), time.time(), time.time())
    await publisher.lost(cut, SegmentOutcome(failed))
    assert not any(store.storage.exists(e.key) for e in failed.renditions)
    # The stream ended before the segment was published.
    r = await client.post(f"{BASE}/end/{stream['id']}", headers=owner.auth)
    assert r.status_code == 200, r.text
    verdict, late = await _publish(publisher, store, source, 2, time.time())
    assert verdict is None
    assert not any(store.storage.exists(k) for k in late)
    assert _sequences(store.settings, stream["id"]) == []


async def test_only_the_sweep_may_expire_media(db: Database, make_user: Any) -> None:
    """expire_media runs as the schema owner: a session acting as a user may not call it."""
    user = await make_user("expirer")
    with pytest.raises(Exception, match="expire_media is for the retention sweep"):
        async with db.acting(user.id) as conn:
            await expire_media(
                conn, dvr_window_s=1, keep_last=1, vod_retention_days=None, max_rows=1
            )
