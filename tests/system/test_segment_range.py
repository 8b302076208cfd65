"""Segments served from an S3 bucket (moto's real S3-API server, started here): byte
ranges proxied like local files, and presigned redirects for public streams only.

The API app runs in process with the session's Postgres and the bucket as its store
(as tests/system/test_object_storage.py does); a real worker encodes the segment into
the bucket and the real publisher records it.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from lumalive.db import Database
from lumalive.settings import Settings
from media.object_storage import open_storage
from media.segmenter import Segmenter
from tests.utils.api import Person
from tests.utils.in_process import api_client, publish_segment
from tests.utils.media import synthetic
from tests.utils.s3 import s3_environment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bucket_url() -> Iterator[str]:
    with s3_environment() as env:
        yield f"s3://{env['AWS_S3_BUCKET']}/media"


@pytest.fixture
async def proxied(settings: Settings, bucket_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async for c in api_client(settings.model_copy(update={"media_url": bucket_url})):
        yield c


@pytest.fixture
async def presigned(settings: Settings, bucket_url: str) -> AsyncIterator[httpx.AsyncClient]:
    update = {"media_url": bucket_url, "media_presign": True, "media_presign_ttl_s": 120}
    async for c in api_client(settings.model_copy(update=update)):
        yield c


async def _publish(
    stream: dict[str, Any], owner: Person, settings: Settings, db: Database, bucket_url: str
) -> str:
    """One small segment encoded into the bucket and published; its 360p path."""
    settings = settings.model_copy(update={"media_url": bucket_url})
    data = synthetic(frames=20, gop=20, size=(854, 480), fps=10)
    source = next(iter(Segmenter(io.BytesIO(data), format="flv")))
    _, verdict = await publish_segment(stream, owner, settings, db, source, cut_s_ago=2)
    assert verdict
    return f"/api/live-streaming/{stream['id']}/hls/360p/00000000.ts"


async def test_byte_ranges_of_a_segment_in_the_bucket(
    proxied: httpx.AsyncClient,
    db: Database,
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    bucket_url: str,
) -> None:
    owner = await make_user("rangeowner")
    stream = await make_stream(owner, start=True)
    path = await _publish(stream, owner, settings, db, bucket_url)
    whole = open_storage(bucket_url).get(f"{stream['id']}/360p/00000000.ts")
    size = len(whole)
    assert size > 1000

    r = await proxied.get(path)
    assert r.status_code == 200 and r.content == whole
    assert r.headers["accept-ranges"] == "bytes"
    for header, (start, end) in {
        "bytes=0-187": (0, 188),
        "bytes=376-": (376, size),
        "bytes=-188": (size - 188, size),
        f"bytes=100-{size + 50}": (100, size),
    }.items():
        r = await proxied.get(path, headers={"Range": header})
        assert r.status_code == 206, (header, r.text)
        assert r.content == whole[start:end], header
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert int(r.headers["content-length"]) == end - start
        assert r.headers["content-type"] == "video/mp2t"

    r = await proxied.get(path, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    assert r.json()["error"]["code"] == "range_not_satisfiable"
    r = await proxied.get(path, headers={"Range": "bytes=9-3"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_range"
    r = await proxied.get(path, headers={"Range": "bytes=0-1, 5-6"})  # several: all of it
    assert r.status_code == 200 and r.content == whole

    # The object gone (out of band): 404, with or without a range.
    open_storage(bucket_url).delete([f"{stream['id']}/360p/00000000.ts"])
    for headers in ({}, {"Range": "bytes=0-9"}):
        r = await proxied.get(path, headers=headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "segment_not_found"


async def test_presigned_redirects_for_public_streams_only(
    presigned: httpx.AsyncClient,
    db: Database,
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    bucket_url: str,
) -> None:
    owner = await make_user("presignowner")
    public = await make_stream(owner, start=True)
    path = await _publish(public, owner, settings, db, bucket_url)
    whole = open_storage(bucket_url).get(f"{public['id']}/360p/00000000.ts")

    r = await presigned.get(path)
    assert r.status_code == 307, r.text
    location = r.headers["location"]
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=120" in location
    async with httpx.AsyncClient(timeout=30) as outside:  # a player following it
        fetched = await outside.get(location)
    assert fetched.status_code == 200 and fetched.content == whole
    # Unsigned, the same object is refused: the bucket itself stays private.
    async with httpx.AsyncClient(timeout=30) as outside:
        assert (await outside.get(location.split("?")[0])).status_code == 403

    # A private stream's segment is never redirected: proxied, for its owner only.
    private = await make_stream(owner, start=True, privacy="private")
    path = await _publish(private, owner, settings, db, bucket_url)
    r = await presigned.get(path, headers=owner.auth)
    assert r.status_code == 200 and "location" not in r.headers
    assert r.content == open_storage(bucket_url).get(f"{private['id']}/360p/00000000.ts")
    assert (await presigned.get(path)).status_code == 404
