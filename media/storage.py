"""Where segments and playlists live: a small key/bytes interface and a local-disk store.

Invariants:
- Keys are relative, `/`-separated paths without `.` or `..` parts
  (`streams/<id>/720p/00000042.ts`); anything else is rejected, so a key from a
  request can never address a file outside the root.
- `put` is atomic: a reader sees the old bytes or the new bytes, never a partial
  file (write a temporary file in the same directory, then rename over the key).
- A missing key raises `KeyError` from `get` and `open`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import urlsplit

__all__ = ["LocalStorage", "SegmentStorage", "validate_key", "check_media_url", "OBJECT_SCHEMES"]

_TMP_PREFIX = ".tmp-"
# URL schemes of the object stores `media.object_storage` opens (memory: tests, benchmarks).
OBJECT_SCHEMES = frozenset({"s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "memory"})


@runtime_checkable
class SegmentStorage(Protocol):
    """What the pipeline needs from a blob store: `LocalStorage` here, `ObjectStorage`
    (S3, GCS, Azure) in `media.object_storage`; `open_storage(url)` picks one."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def open(self, key: str) -> BinaryIO: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, keys: Iterable[str]) -> int:
        """Delete exact keys (missing ones are fine); returns how many were asked for."""
        ...

    def delete_prefix(self, prefix: str) -> int: ...


def validate_key(key: str) -> str:
    """Return the key if it is a safe relative path, else raise ValueError."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(p in ("", ".", "..") for p in parts)
        or parts[-1].startswith(_TMP_PREFIX)
    ):
        raise ValueError(f"invalid storage key {key!r}")
    return key


def check_media_url(url: str) -> str:
    """Return a media URL if some store can open it, else raise ValueError: `file:///dir`
    (absolute, no host) or an object store URL with its bucket (`s3://bucket/prefix`)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"a file:// media URL is file:///absolute/dir, not {url!r}")
    elif parts.scheme not in OBJECT_SCHEMES:
        raise ValueError(
            f"unsupported media URL {url!r}: use file://, s3://, gs:// or az:// (see README)"
        )
    elif not parts.netloc and parts.scheme != "memory":
        raise ValueError(f"a media URL names its bucket: {parts.scheme}://bucket/prefix")
    return url


class LocalStorage:
    """Keys as files under `root`. `fsync=True` also survives a power cut, at the cost
    of a disk flush per segment; a live segment is rarely worth it."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync

    def path(self, key: str) -> Path:
        """The file for a key (which may not exist yet), e.g. for a file response."""
        return self.root.joinpath(*validate_key(key).split("/"))

    def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, keys: Iterable[str]) -> int:
        paths = [self.path(key) for key in keys]
        for path in paths:
            path.unlink(missing_ok=True)
        return len(paths)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key that starts with `prefix` (as text, like S3) and the
        directories left empty; returns how many keys. `"streams/42/"` removes a
        stream's whole tree."""
        if not prefix:
            raise ValueError("an empty prefix would delete everything")
        head = prefix.rpartition("/")[0]
        base = self.path(head) if head else self.root
        if not base.is_dir():
            return 0
        deleted = 0
        tree = sorted(base.rglob("*"), reverse=True)  # children before parents
        for path in tree + ([base] if head else []):
            key = path.relative_to(self.root).as_posix()
            if path.is_dir():
                if (key + "/").startswith(prefix) and not any(path.iterdir()):
                    path.rmdir()
            elif key.startswith(prefix):
                path.unlink()
                deleted += not path.name.startswith(_TMP_PREFIX)
        return deleted
