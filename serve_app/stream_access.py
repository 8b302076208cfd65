"""Which streams a caller may see, asked on every request about a stream: rows read
as the caller (RLS decides) and cached per replica for `visibility_cache_s`."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from lumalive.db import Database
from lumalive.errors import Conflict, Forbidden, NotFound
from lumalive.status import StreamStatus
from lumalive.store import streams

__all__ = ["StreamAccess"]


class StreamAccess:
    """A stream as a user sees it, and the checks routes make on it (owner, live).

    The cache only ever answers the hot paths (join, chat, react, playback);
    anything that must be current reads through (`fresh=True`), and whoever
    changes a stream's state calls `invalidate`.
    """

    def __init__(self, db: Database, cache_s: float, max_entries: int = 100_000) -> None:
        self._db = db
        self._cache_s = cache_s
        self._max_entries = max_entries
        self._visible: dict[tuple[UUID | None, UUID], tuple[float, dict[str, Any]]] = {}

    async def visible(
        self, user_id: UUID | None, stream_id: UUID, *, fresh: bool = False
    ) -> dict[str, Any]:
        """The stream as the user sees it; NotFound if they may not see it."""
        key = (user_id, stream_id)
        hit = self._visible.get(key)
        if hit and not fresh and time.monotonic() - hit[0] < self._cache_s:
            return hit[1]
        async with self._db.acting(user_id) as conn:
            row = await streams.get(conn, stream_id)
        if row is None:
            self._visible.pop(key, None)
            raise NotFound("stream not found", "stream_not_found")
        if len(self._visible) > self._max_entries:
            self._visible.clear()
        self._visible[key] = (time.monotonic(), row)
        return row

    async def owned(self, user_id: UUID, stream_id: UUID) -> dict[str, Any]:
        """The stream, read through; Forbidden unless `user_id` owns it."""
        row = await self.visible(user_id, stream_id, fresh=True)
        if row["user_id"] != user_id:
            raise Forbidden("only the stream's owner may do this", "not_stream_owner")
        return row

    async def live(self, user_id: UUID, stream_id: UUID) -> dict[str, Any]:
        """The stream; Conflict `stream_not_live` unless it is live."""
        row = await self.visible(user_id, stream_id)
        if row["status"] != StreamStatus.LIVE:  # maybe a stale cache: another replica started it
            row = await self.visible(user_id, stream_id, fresh=True)
        if row["status"] != StreamStatus.LIVE:
            raise Conflict(f"stream is {row['status']}, not live", "stream_not_live")
        return row

    async def status(self, stream_id: UUID, user_id: UUID) -> str:
        """The stream's status now (read through), as `user_id` sees it."""
        status: str = (await self.visible(user_id, stream_id, fresh=True))["status"]
        return status

    def invalidate(self, stream_id: UUID) -> None:
        """Forget cached rows of a stream whose state changed."""
        self._visible = {k: v for k, v in self._visible.items() if k[1] != stream_id}
