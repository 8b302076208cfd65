"""LocalStorage: atomic puts, safe keys, prefix deletes."""

from __future__ import annotations

from pathlib import Path

import pytest

from media.storage import LocalStorage, SegmentStorage


def test_round_trip(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "media")
    assert isinstance(store, SegmentStorage)
    store.put("streams/1/720p/00000000.ts", b"abc")
    assert store.exists("streams/1/720p/00000000.ts")
    assert store.get("streams/1/720p/00000000.ts") == b"abc"
    with store.open("streams/1/720p/00000000.ts") as f:
        assert f.read() == b"abc"
    assert store.path("streams/1/720p/00000000.ts").read_bytes() == b"abc"
    store.put("streams/1/720p/00000000.ts", b"new")
    assert store.get("streams/1/720p/00000000.ts") == b"new"
    assert not store.exists("streams/1/720p")  # a directory is not a key
    with pytest.raises(KeyError):
        store.get("streams/1/missing.ts")
    with pytest.raises(KeyError):
        store.open("streams/1")


def test_a_failed_put_leaves_the_old_bytes_and_no_temporary_file(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.put("a/index.m3u8", b"old")
    with pytest.raises(TypeError):
        store.put("a/index.m3u8", "not bytes")  # type: ignore[arg-type]
    assert store.get("a/index.m3u8") == b"old"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["index.m3u8"]


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\b", "a/.tmp-x"]
)
def test_unsafe_keys_are_rejected(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        LocalStorage(tmp_path).put(key, b"x")


def test_delete_prefix(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    for key in ("s/ab/720p/0.ts", "s/ab/720p/1.ts", "s/ab/master.m3u8", "s/abc/0.ts"):
        store.put(key, b"x")
    assert store.delete_prefix("s/ab/720p/1") == 1
    assert store.delete_prefix("s/ab/") == 2
    assert not (tmp_path / "s" / "ab").exists()
    assert store.exists("s/abc/0.ts")
    assert store.delete_prefix("s/nothing/") == 0
    assert store.delete_prefix("s/a") == 1  # text prefix, as in S3
    with pytest.raises(ValueError):
        store.delete_prefix("")
