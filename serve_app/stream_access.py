"""Which streams a caller may see, and whether they may take part, asked on every
request about a stream: rows read as the caller (RLS decides) and cached per replica
for `visibility_cache_s`.

Trust and safety (sql/0006) is checked here, so the answer is a clear 403, and again
by Postgres on every write:
- a user banned from a stream gets 403 `banned_from_stream` for everything about it
  (reads, feeds, playback, joining, chat, reactions);
- a user timed out of its chat gets 403 `timed_out` (with the reason and until when)
  for chat and reactions (`speaking`);
- joining, chatting or reacting in an NSFW stream (declared, or flagged by video
  moderation) without the opt-in (`PUT /api/me/settings`) is 403 `nsfw_opt_in_required`.
Reads may use the cached standing; `live` and `speaking` (the writes) read it fresh,
so a ban made on any replica takes effect on the next write at once.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from lumalive.db import Database
from lumalive.errors import Conflict, Forbidden, NotFound
from lumalive.status import StreamStatus
from lumalive.store import moderation, streams
from lumalive.store.moderation import Standing

__all__ = ["StreamAccess"]

_CLEAR = Standing(banned=False, timed_out_until=None, reason="", nsfw_ok=True)


class StreamAccess:
    """A stream as a user sees it, and the checks routes make on it (owner, live,
    not banned, NSFW opt-in).

    The cache only ever answers the hot paths (join, chat, react, playback);
    anything that must be current reads through (`fresh=True`), and whoever
    changes a stream's state calls `invalidate`.
    """

    def __init__(self, db: Database, cache_s: float, max_entries: int = 100_000) -> None:
        self._db = db
        self._cache_s = cache_s
        self._max_entries = max_entries
        self._visible: dict[tuple[UUID | None, UUID], tuple[float, dict[str, Any], Standing]] = {}

    async def visible(
        self, user_id: UUID | None, stream_id: UUID, *, fresh: bool = False
    ) -> dict[str, Any]:
        """The stream as the user sees it; NotFound if they may not see it, Forbidden
        `banned_from_stream` if they are banned from it."""
        row, standing = await self._read(user_id, stream_id, fresh)
        if standing.banned:
            raise _banned(standing)
        return row

    async def _read(
        self, user_id: UUID | None, stream_id: UUID, fresh: bool
    ) -> tuple[dict[str, Any], Standing]:
        key = (user_id, stream_id)
        hit = self._visible.get(key)
        if hit and not fresh and time.monotonic() - hit[0] < self._cache_s:
            return hit[1], hit[2]
        async with self._db.acting(user_id) as conn:
            row = await streams.get(conn, stream_id)
            standing = (
                await moderation.standing(conn, stream_id)
                if row is not None and user_id is not None and row["user_id"] != user_id
                else _CLEAR
            )
        if row is None:
            self._visible.pop(key, None)
            raise NotFound("stream not found", "stream_not_found")
        if len(self._visible) > self._max_entries:
            self._visible.clear()
        self._visible[key] = (time.monotonic(), row, standing)
        return row, standing

    async def owned(self, user_id: UUID, stream_id: UUID) -> dict[str, Any]:
        """The stream, read through; Forbidden unless `user_id` owns it."""
        row = await self.visible(user_id, stream_id, fresh=True)
        if row["user_id"] != user_id:
            raise Forbidden("only the stream's owner may do this", "not_stream_owner")
        return row

    async def live(self, user_id: UUID, stream_id: UUID) -> dict[str, Any]:
        """The stream, to join or take part in; Conflict `stream_not_live` unless it is
        live, Forbidden if the user is banned or has not opted in to an NSFW stream."""
        row, _ = await self._taking_part(user_id, stream_id)
        return row

    async def speaking(self, user_id: UUID, stream_id: UUID) -> dict[str, Any]:
        """As `live`, for chat and reactions: also Forbidden `timed_out` while the user
        is timed out of the stream's chat."""
        row, standing = await self._taking_part(user_id, stream_id)
        if standing.timed_out_until is not None:
            reason = f" ({standing.reason})" if standing.reason else ""
            raise Forbidden(
                "you are timed out of this stream's chat until"
                f" {standing.timed_out_until.isoformat()}{reason}",
                "timed_out",
            )
        return row

    async def _taking_part(self, user_id: UUID, stream_id: UUID) -> tuple[dict[str, Any], Standing]:
        row, _ = await self._read(user_id, stream_id, False)
        if row["status"] != StreamStatus.LIVE:  # maybe a stale cache: another replica started it
            row, _ = await self._read(user_id, stream_id, True)
        if row["status"] != StreamStatus.LIVE:
            raise Conflict(f"stream is {row['status']}, not live", "stream_not_live")
        standing = await self._standing(user_id, row)
        if standing.banned:
            raise _banned(standing)
        if not standing.nsfw_ok:
            raise Forbidden(
                "this stream is marked NSFW; opt in with PUT /api/me/settings"
                ' {"showNSFW": true} to watch it',
                "nsfw_opt_in_required",
            )
        return row, standing

    async def _standing(self, user_id: UUID, row: dict[str, Any]) -> Standing:
        """The user's standing now (read through: bans are made on any replica)."""
        if row["user_id"] == user_id:
            return _CLEAR
        async with self._db.acting(user_id) as conn:
            return await moderation.standing(conn, row["id"])

    async def status(self, stream_id: UUID, user_id: UUID) -> str:
        """The stream's status now (read through), as `user_id` sees it."""
        status: str = (await self.visible(user_id, stream_id, fresh=True))["status"]
        return status

    def invalidate(self, stream_id: UUID) -> None:
        """Forget cached rows of a stream whose state changed."""
        self._visible = {k: v for k, v in self._visible.items() if k[1] != stream_id}


def _banned(standing: Standing) -> Forbidden:
    reason = f": {standing.reason}" if standing.reason else ""
    return Forbidden(f"you are banned from this stream{reason}", "banned_from_stream")
