"""One publish's FLV, sent to every reader: tags as they come, and what a late
reader needs first.

Invariants:
- Every reader's bytes form a valid FLV file: header, then the latest metadata
  and decoder configuration, then tags from a keyframe on. A reader subscribed
  before any media gets every tag as published; a later one starts at the cached
  current GOP (or, when that outgrew `gop_cache_bytes`, at the configuration only).
- Tags are sent to all readers in the order they came, with the publisher's
  timestamps unchanged; a reader that is gone or cut off is forgotten.
- After `finish`, nothing more is sent: readers get EOF after what they buffered,
  and a new reader gets the start and EOF.
"""

from __future__ import annotations

from typing import Any

from media.rtmp import flv
from media.rtmp.flv_reader import Subscriber

__all__ = ["FlvFanout"]


class FlvFanout:
    """The readers of one publish, and the tags kept for those who join late."""

    def __init__(self, gop_cache_bytes: int) -> None:
        self._gop_cache_bytes = gop_cache_bytes
        self._subscribers: list[Subscriber] = []
        self._finished = False
        # What a late reader needs before live tags: a valid FLV start.
        self._file_header: bytes | None = None
        self._script_tag: bytes | None = None
        self._video_config: bytes | None = None
        self._audio_config: bytes | None = None
        self._gop: list[bytes] = []
        self._gop_bytes = 0
        self._gop_open = gop_cache_bytes > 0  # caching until the cache overflows

    def subscribe(self, subscriber: Subscriber) -> None:
        """Give a new reader the FLV start, then the live tags (or EOF, if finished)."""
        start = b"".join(
            part
            for part in (
                self._file_header,
                self._script_tag,
                self._video_config,
                self._audio_config,
            )
            if part
        ) + b"".join(self._gop)
        if start:
            subscriber.push(start)
        if self._finished:
            subscriber.finish()
        else:
            self._subscribers.append(subscriber)

    def send_script(self, timestamp: int, body: bytes, metadata: dict[str, Any] | None) -> None:
        """A data tag; `metadata` is its onMetaData object, if it is one (late
        readers then get this tag, and it decides the FLV header's track flags)."""
        data = self._send(flv.SCRIPT, timestamp, body, metadata or {})
        if metadata is not None:
            self._script_tag = data

    def send_media(self, kind: int, timestamp: int, body: bytes) -> None:
        """An audio (flv.AUDIO) or video (flv.VIDEO) tag body."""
        data = self._send(kind, timestamp, body, {})
        if kind == flv.VIDEO:
            if flv.is_video_sequence_header(body):
                self._video_config = data
                return
            if flv.is_video_frame(body) and flv.is_keyframe(body):
                # A keyframe starts a new GOP: a late reader starts here.
                self._gop, self._gop_bytes = [], 0
                self._gop_open = self._gop_cache_bytes > 0
        elif flv.is_audio_sequence_header(body):
            self._audio_config = data
            return
        self._cache(data)

    def finish(self) -> None:
        """The publish is over: readers get EOF after what they buffered. Idempotent."""
        self._finished = True
        for subscriber in self._subscribers:
            subscriber.finish()
        self._subscribers.clear()
        self._gop, self._gop_bytes = [], 0

    def _cache(self, data: bytes) -> None:
        """Keep a tag of the current GOP, until the GOP outgrows the cache."""
        if self._gop_open:
            self._gop.append(data)
            self._gop_bytes += len(data)
            if self._gop_bytes > self._gop_cache_bytes:
                self._gop, self._gop_bytes, self._gop_open = [], 0, False

    def _send(self, tag_type: int, timestamp: int, body: bytes, metadata: dict[str, Any]) -> bytes:
        """Build the tag and send it (after the file header, first time) to every reader."""
        data = flv.tag(tag_type, timestamp, body)
        if self._finished:
            return data
        if self._file_header is None:
            self._file_header = _file_header(tag_type, metadata)
            self._broadcast(self._file_header)
        self._broadcast(data)
        return data

    def _broadcast(self, data: bytes) -> None:
        alive = [subscriber for subscriber in self._subscribers if subscriber.push(data)]
        if len(alive) != len(self._subscribers):  # closed or cut off: forget them
            self._subscribers = alive


def _file_header(first_tag_type: int, metadata: dict[str, Any]) -> bytes:
    # Metadata (normally the first tag) says which tracks exist; the flags let
    # a demuxer stop probing for a track that will never come.
    has_audio = "audiocodecid" in metadata
    has_video = "videocodecid" in metadata
    if first_tag_type != flv.SCRIPT or not (has_audio or has_video):
        has_audio = has_video = True
    return flv.file_header(has_audio=has_audio, has_video=has_video)
