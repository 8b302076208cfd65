"""Segments in an object store (S3 or any S3-compatible server, GCS, Azure) by URL,
and the factory that picks a store from `LUMALIVE_MEDIA_URL`.

Built on obstore (Rust `object_store`): one client for every cloud, which reads the
standard variables itself (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`; `GOOGLE_*`, `AZURE_*`), so no
credential passes through our settings or our logs.

Invariants (the same as `media.storage.LocalStorage`, so callers cannot tell them apart):
- Keys are validated by `validate_key` before any request: a request-derived key
  never leaves the URL's prefix.
- `put` is atomic: an object PUT replaces the whole object or nothing, and a retried
  segment writes the same key, so it overwrites its own bytes and leaves no orphan.
- A missing key raises `KeyError` from `get` and `open`.
- `delete_prefix` matches keys as text, like S3 (`"abc/00"` deletes `abc/0001.ts`).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import unquote, urlsplit

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import AzureStore, GCSStore, ObjectStore, S3Store, from_url

from media.storage import LocalStorage, SegmentStorage, check_media_url, validate_key

__all__ = ["ObjectStorage", "open_storage"]

_DELETE_BATCH = 1000  # S3's DeleteObjects limit per request


class ObjectStorage:
    """Keys as objects under the URL's bucket and prefix."""

    def __init__(self, store: ObjectStore, url: str) -> None:
        self.store = store
        self.url = url

    @classmethod
    def from_url(cls, url: str) -> ObjectStorage:
        return cls(from_url(url), url)

    def put(self, key: str, data: bytes) -> None:
        obstore.put(self.store, validate_key(key), data)

    def get(self, key: str) -> bytes:
        try:
            return obstore.get(self.store, validate_key(key)).bytes().to_bytes()
        except (NotFoundError, FileNotFoundError):
            raise KeyError(key) from None

    def open(self, key: str) -> BinaryIO:
        """A buffered, seekable reader that fetches ranges as it is read."""
        try:
            reader = obstore.open_reader(self.store, validate_key(key))
        except (NotFoundError, FileNotFoundError):
            raise KeyError(key) from None
        return cast(BinaryIO, io.BufferedReader(_RangeReader(reader)))

    def exists(self, key: str) -> bool:
        try:
            obstore.head(self.store, validate_key(key))
        except (NotFoundError, FileNotFoundError):
            return False
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key that starts with `prefix`; returns how many."""
        if not prefix:
            raise ValueError("an empty prefix would delete everything")
        # obstore lists by whole path parts: list the folder, filter by text.
        head = prefix.rpartition("/")[0]
        keys = [
            meta["path"]
            for batch in obstore.list(self.store, prefix=validate_key(head) if head else None)
            for meta in batch
            if meta["path"].startswith(prefix)
        ]
        return self.delete(keys)

    def delete(self, keys: Iterable[str]) -> int:
        """One request per `_DELETE_BATCH` keys (S3's DeleteObjects limit), not a listing."""
        keys = [validate_key(k) for k in keys]
        for i in range(0, len(keys), _DELETE_BATCH):
            obstore.delete(self.store, keys[i : i + _DELETE_BATCH])
        return len(keys)

    async def stream(self, key: str) -> tuple[int, AsyncIterator[bytes]]:
        """The object's size and its bytes as they arrive, for a proxying response.
        KeyError before any byte if it is missing, so the caller can still answer 404."""
        try:
            result = await obstore.get_async(self.store, validate_key(key))
        except (NotFoundError, FileNotFoundError):
            raise KeyError(key) from None

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in result.stream():
                yield bytes(chunk)

        return int(result.meta["size"]), chunks()

    async def size(self, key: str) -> int:
        """The object's size in bytes (a HEAD); KeyError if it is missing."""
        try:
            meta = await obstore.head_async(self.store, validate_key(key))
        except (NotFoundError, FileNotFoundError):
            raise KeyError(key) from None
        return int(meta["size"])

    async def stream_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start` up to `end` (exclusive) as they arrive: one ranged GET."""
        result = await obstore.get_async(
            self.store, validate_key(key), options={"range": (start, end)}
        )
        async for chunk in result.stream():
            yield bytes(chunk)

    def presign(self, key: str, ttl_s: int) -> str | None:
        """A URL that GETs the object without credentials for `ttl_s` seconds, signed
        locally (no request); None if this kind of store cannot sign (memory, local)."""
        if not isinstance(self.store, S3Store | GCSStore | AzureStore):
            return None
        return obstore.sign(self.store, "GET", validate_key(key), timedelta(seconds=ttl_s))


class _RangeReader(io.RawIOBase):
    """obstore's reader (ranged GETs on demand) as a standard raw stream of `bytes`."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = memoryview(self._reader.read(len(view)))
        view[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._reader.seek(offset, whence))

    def tell(self) -> int:
        return int(self._reader.tell())

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()


def open_storage(url: str) -> SegmentStorage:
    """The store for a media URL: `file:///abs/dir` a local directory (atomic renames,
    file responses), an object store URL an `ObjectStorage`."""
    parts = urlsplit(check_media_url(url))
    if parts.scheme == "file":
        return LocalStorage(Path(unquote(parts.path)))
    return ObjectStorage.from_url(url)
