"""Segment storage by URL: the same contract for a local directory (`file://`) and an
object store (`s3://` on a real S3-API server, moto's, started here), and the media
worker writing its renditions straight into the bucket."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from actors.media_worker import SegmentJob, SegmentWorker
from actors.segment_publisher import ladder_for
from lumalive.settings import Settings
from media.object_storage import ObjectStorage, open_storage
from media.storage import LocalStorage, SegmentStorage
from tests.utils.media import CLIP
from tests.utils.s3 import s3_environment


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """The server, and the standard AWS_* variables pointing at it for this module."""
    with s3_environment() as env:
        yield env


_prefixes = iter(range(10**6))


@pytest.fixture(params=["file", "s3"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each kind, by URL (a new prefix per test in the bucket)."""
    if request.param == "file":
        return (tmp_path / "media").as_uri()
    env = request.getfixturevalue("s3")
    return f"s3://{env['AWS_S3_BUCKET']}/t{next(_prefixes)}"


def test_open_storage_picks_the_store_by_scheme(url: str) -> None:
    store = open_storage(url)
    assert isinstance(store, SegmentStorage)
    assert isinstance(store, LocalStorage if url.startswith("file:") else ObjectStorage)


def test_round_trip(url: str) -> None:
    store = open_storage(url)
    key = "streams/1/720p/00000000.ts"
    store.put(key, b"abc")
    assert store.exists(key) and store.get(key) == b"abc"
    with store.open(key) as f:
        assert f.read() == b"abc"
    store.put(key, b"new")  # a retried segment overwrites its own key
    assert store.get(key) == b"new"
    assert not store.exists("streams/1/720p")  # a folder is not a key
    with pytest.raises(KeyError):
        store.get("streams/1/missing.ts")
    with pytest.raises(KeyError):
        store.open("streams/1/missing.ts")


def test_open_streams_and_seeks_a_large_object(url: str) -> None:
    store = open_storage(url)
    data = bytes(range(256)) * 8192  # 2 MiB: several reads of the buffered reader
    store.put("a/big.ts", data)
    with store.open("a/big.ts") as f:
        assert f.read(10) == data[:10]
        f.seek(1_000_000)
        assert f.read(5) == data[1_000_000:1_000_005]
        f.seek(0)
        assert f.read() == data


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\b", "a/.tmp-x"]
)
def test_unsafe_keys_are_refused_before_any_request(url: str, key: str) -> None:
    store = open_storage(url)
    for op in (store.get, store.open, store.exists):
        with pytest.raises(ValueError):
            op(key)
    with pytest.raises(ValueError):
        store.put(key, b"x")


def test_delete_prefix_matches_keys_as_text(url: str) -> None:
    store = open_storage(url)
    keys = ["s1/720p/00000000.ts", "s1/720p/00000001.ts", "s1/360p/00000000.ts", "s10/a.ts"]
    for k in keys:
        store.put(k, b"x")
    assert store.delete_prefix("s1/720p/") == 2
    assert [store.exists(k) for k in keys] == [False, False, True, True]
    assert store.delete_prefix("s1/") == 1  # not s10/
    assert store.exists("s10/a.ts") and not store.exists("s1/360p/00000000.ts")
    assert store.delete_prefix("s1/") == 0
    with pytest.raises(ValueError):
        store.delete_prefix("")


def test_delete_prefix_in_the_bucket_leaves_other_prefixes(s3: dict[str, str]) -> None:
    """Two stores in one bucket (two deployments, or media beside other data)."""
    bucket = s3["AWS_S3_BUCKET"]
    a, b = open_storage(f"s3://{bucket}/one"), open_storage(f"s3://{bucket}/two")
    a.put("s/x.ts", b"a")
    b.put("s/x.ts", b"b")
    assert a.delete_prefix("s/") == 1
    assert b.get("s/x.ts") == b"b" and not a.exists("s/x.ts")


def test_objects_are_plain_keys_under_the_urls_prefix(s3: dict[str, str]) -> None:
    """What another S3 client sees: the bucket, the URL's prefix, then our key; and
    the bucket stays private (the API proxies segments, it never makes them public)."""
    import boto3  # moto's own client library: an independent S3 client

    bucket = s3["AWS_S3_BUCKET"]
    open_storage(f"s3://{bucket}/deploy").put("sid/360p/00000007.ts", b"seg")
    client = boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"])
    listed = client.list_objects_v2(Bucket=bucket, Prefix="deploy/")
    assert [o["Key"] for o in listed["Contents"]] == ["deploy/sid/360p/00000007.ts"]
    url = f"{s3['AWS_ENDPOINT_URL']}/{bucket}/deploy/sid/360p/00000007.ts"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url)  # anonymous
    assert refused.value.code == 403


@pytest.mark.parametrize(
    "bad", ["ftp://x/y", "file://host/dir", "file:relative", "media", "s3:///no-bucket"]
)
def test_an_unsupported_media_url_is_refused_at_startup(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="media URL"):
        open_storage(bad)
    with pytest.raises(ValueError, match="media URL"):  # pydantic's ValidationError
        Settings(data_dir=tmp_path, media_url=bad)


def test_settings_default_to_the_local_media_root(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = open_storage(settings.media_store_url)
    assert isinstance(store, LocalStorage) and store.root == settings.media_root
    assert Settings(data_dir=tmp_path, media_url="s3://b/p").media_store_url == "s3://b/p"


def test_the_worker_writes_every_rendition_to_the_bucket(s3: dict[str, str]) -> None:
    """The media worker, built from settings with `media_url=s3://...`, encodes a real
    segment and stores each rendition in the bucket under its segment key."""
    from media.segmenter import Segmenter

    with CLIP.open("rb") as f:
        source = next(iter(Segmenter(io.BytesIO(f.read()), format="mp4")))
    url = f"s3://{s3['AWS_S3_BUCKET']}/worker"
    settings = Settings(media_url=url, x264_preset="ultrafast", media_max_height=360)
    renditions, _ = ladder_for(
        {"quality": "1080p"}, settings, source.width, source.height, source.fps
    )
    worker = SegmentWorker(settings)
    result = worker.process(SegmentJob("sid", 3, renditions, source.frames, 0), source.data)
    assert result.error is None and [r.key for r in result.renditions] == ["sid/360p/00000003.ts"]
    stored = open_storage(url).get("sid/360p/00000003.ts")
    assert len(stored) == result.renditions[0].size
    with av.open(io.BytesIO(stored), format="mpegts") as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == source.frames
