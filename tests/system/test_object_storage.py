"""Segments in an S3 bucket, end to end through the real parts: the media worker built
from settings with `media_url=s3://...` encodes a real segment into a real S3-API
server (moto's, started here), the real `SegmentPublisher` records it in the session's
Postgres, and the API (the app `lumalive up` serves, here in process with the same
settings plus the bucket's URL) plays it back by proxying the bucket, with the same
privacy as segments on disk.

The session system itself keeps `file://` storage: a second Ray cluster would cost
more than the test; the Ray pool only moves the worker's call to another process.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import av
import httpx
import pytest

from lumalive.db import Database
from lumalive.settings import Settings
from media.object_storage import open_storage
from media.segmenter import Segmenter, SourceSegment
from tests.utils.api import Person
from tests.utils.in_process import api_client, publish_segment
from tests.utils.media import CLIP
from tests.utils.s3 import s3_environment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bucket_url() -> Iterator[str]:
    """The S3 server, the standard AWS_* variables for this process, the media URL."""
    with s3_environment() as env:
        yield f"s3://{env['AWS_S3_BUCKET']}/media"


@pytest.fixture(scope="module")
def s3_settings(settings: Settings, bucket_url: str) -> Settings:
    return settings.model_copy(update={"media_url": bucket_url})


@pytest.fixture
async def api(s3_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API app with the bucket as its segment store, served in process."""
    async for c in api_client(s3_settings):
        yield c


def _source() -> SourceSegment:
    with CLIP.open("rb") as f:
        return next(iter(Segmenter(io.BytesIO(f.read()), format="mp4")))


async def _publish_to_bucket(
    stream: dict[str, Any], owner: Person, settings: Settings, db: Database
) -> list[str]:
    """One segment of the clip: encoded into the bucket, published to Postgres."""
    result, verdict = await publish_segment(stream, owner, settings, db, _source(), cut_s_ago=5)
    assert verdict is not None, "the stream was not live"
    return [r.key for r in result.renditions]


async def test_a_segment_in_the_bucket_plays_back_through_the_api(
    api: httpx.AsyncClient,
    client: httpx.AsyncClient,
    db: Database,
    make_user: Any,
    make_stream: Any,
    s3_settings: Settings,
    bucket_url: str,
) -> None:
    owner = await make_user("s3owner")
    stream = await make_stream(owner, start=True)
    keys = await _publish_to_bucket(stream, owner, s3_settings, db)
    sid = stream["id"]
    assert keys == [f"{sid}/480p/00000000.ts", f"{sid}/360p/00000000.ts"]
    bucket = open_storage(bucket_url)
    # Nothing of it on the session's local disk: the bucket is the only copy.
    assert not (s3_settings.media_root / sid).exists()

    r = await api.get(f"/api/live-streaming/{sid}/hls/master.m3u8")
    assert r.status_code == 200 and "480p/index.m3u8" in r.text
    r = await api.get(f"/api/live-streaming/{sid}/hls/360p/index.m3u8")
    assert r.status_code == 200 and "00000000.ts" in r.text
    r = await api.get(f"/api/live-streaming/{sid}/hls/360p/00000000.ts")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp2t"
    assert r.headers["cache-control"].startswith("public")
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.content == bucket.get(f"{sid}/360p/00000000.ts")
    with av.open(io.BytesIO(r.content), format="mpegts") as ts:
        sizes = {(f.width, f.height) for f in ts.decode(video=0)}
    assert sizes == {(640, 360)}

    # A segment row whose object is gone (deleted out of band): 404, not a 500.
    assert bucket.delete_prefix(f"{sid}/480p/") == 1
    r = await api.get(f"/api/live-streaming/{sid}/hls/480p/00000000.ts")
    assert r.status_code == 404 and r.json()["error"]["code"] == "segment_not_found"


async def test_a_private_streams_segment_in_the_bucket_is_refused_to_a_stranger(
    api: httpx.AsyncClient,
    db: Database,
    make_user: Any,
    make_stream: Any,
    s3_settings: Settings,
) -> None:
    owner, stranger = await make_user("s3owner"), await make_user("s3stranger")
    stream = await make_stream(owner, start=True, privacy="private")
    await _publish_to_bucket(stream, owner, s3_settings, db)
    path = f"/api/live-streaming/{stream['id']}/hls/360p/00000000.ts"
    for headers in ({}, stranger.auth):
        r = await api.get(path, headers=headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "stream_not_found", r.text
    r = await api.get(path, headers=owner.auth)
    assert r.status_code == 200 and len(r.content) > 0
    assert r.headers["cache-control"].startswith("private")
