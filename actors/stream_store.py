"""What a stream actor persists, and how: the `StreamStore` seam and its Postgres side.

`StreamSession` decides (who is watching, what is allowed now); the store only
writes and reads. Every write a client can observe appends its event row in the
same transaction. `PostgresStreamStore` group-commits through a `WriteBatcher`,
so each write method returns only once its rows are committed; it is what the
Ray actor uses, the seam exists so the session's logic is testable without Postgres.

Invariant: `end` (live → ended) also writes, in its transaction, a gap row for every
upper rung a segment's lowest rung was published without (`media.gap_unpublished_rungs`:
their job had not finished when the ingest's drain timed out or a policy ended the
stream), so every rung's playlist ends with the same media sequence numbers.
"""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from actors.write_batcher import Bulk, WriteBatcher
from lumalive.db import Database
from lumalive.status import StreamStatus
from lumalive.store import activity, media, streams

__all__ = ["StreamStore", "PostgresStreamStore"]


class StreamStore(Protocol):
    """One stream's rows. Write methods return once committed."""

    @property
    def batches(self) -> int:
        """Transactions committed so far."""
        ...

    @property
    def writes(self) -> int:
        """Operations committed so far (`writes / batches` is the mean group size)."""
        ...

    async def load(self) -> tuple[str, set[UUID]]:
        """The stream's status (ended if it has no row) and who has an open viewing."""
        ...

    async def start(self) -> dict[str, Any] | None:
        """created → live, with `stream_started`; None if it was not in `created`."""
        ...

    async def end(self, reason: str) -> dict[str, Any] | None:
        """live → ended, with `stream_ended`; the row as it is afterwards, None if not live."""
        ...

    async def join(self, user_id: UUID) -> bool:
        """Open a viewing, with `viewer_joined`; False if one was open already."""
        ...

    async def leave(self, user_id: UUID) -> int | None:
        """Close the viewing, with `viewer_left`; its seconds, None if none was open."""
        ...

    async def chat(
        self, user_id: UUID, message: str, score: float, moderated: bool
    ) -> dict[str, Any]:
        """A message and its event (`moderation_action` without the text if moderated)."""
        ...

    async def react(self, user_id: UUID, reaction: str) -> dict[str, Any]:
        """A reaction and its `reaction` event."""
        ...


class PostgresStreamStore:
    """`StreamStore` on Postgres, acting as the stream's owner or the writing user (RLS)."""

    def __init__(self, stream_id: UUID, owner_id: UUID, db: Database) -> None:
        self.stream_id = stream_id
        self.owner_id = owner_id
        self._db = db
        self._writes = WriteBatcher(db.engine.begin)
        self._chat: Bulk[activity.ChatDraft] = Bulk(
            lambda conn, drafts: activity.add_chats(conn, stream_id, drafts)
        )
        self._reactions: Bulk[tuple[UUID, str]] = Bulk(
            lambda conn, drafts: activity.add_reactions(conn, stream_id, drafts)
        )

    @property
    def batches(self) -> int:
        return self._writes.batches

    @property
    def writes(self) -> int:
        return self._writes.writes

    async def load(self) -> tuple[str, set[UUID]]:
        async with self._db.acting(self.owner_id) as conn:
            row = await streams.get(conn, self.stream_id)
            status = row["status"] if row else StreamStatus.ENDED
            return status, await activity.open_viewers(conn, self.stream_id)

    async def start(self) -> dict[str, Any] | None:
        async def op(conn: AsyncConnection) -> dict[str, Any] | None:
            row = await streams.transition(
                conn, self.stream_id, StreamStatus.CREATED, StreamStatus.LIVE
            )
            if row:
                await activity.add_event(
                    conn, self.stream_id, "stream_started", {"user_id": self.owner_id}
                )
            return row

        row: dict[str, Any] | None = await self._writes.submit(self.owner_id, op)
        return row

    async def end(self, reason: str) -> dict[str, Any] | None:
        async def op(conn: AsyncConnection) -> dict[str, Any] | None:
            row = await streams.transition(
                conn, self.stream_id, StreamStatus.LIVE, StreamStatus.ENDED, reason
            )
            if row is None:
                return None
            # Upper rungs still pending (`actors.lowest_first`) become gaps here, in the
            # end's transaction: a later `publish_rest` locks the stream row, finds it
            # ended and writes nothing, so no rung is left short and none gets two rows.
            # Not done for a stream ended in SQL (the takedown of sql/0006_trust_safety).
            await media.gap_unpublished_rungs(
                conn, self.stream_id, None, error=media.END_UNPUBLISHED
            )
            await activity.add_event(
                conn,
                self.stream_id,
                "stream_ended",
                {"reason": reason, "duration": row["duration"]},
            )
            # Re-read: the AFTER trigger that closed the viewings changed the counts.
            return await streams.get(conn, self.stream_id)

        row: dict[str, Any] | None = await self._writes.submit(self.owner_id, op)
        return row

    async def join(self, user_id: UUID) -> bool:
        async def op(conn: AsyncConnection) -> bool:
            added = await activity.open_viewing(conn, self.stream_id, user_id)
            if added:
                await activity.add_event(
                    conn, self.stream_id, "viewer_joined", {"user_id": user_id}
                )
            return added

        added: bool = await self._writes.submit(user_id, op)
        return added

    async def leave(self, user_id: UUID) -> int | None:
        async def op(conn: AsyncConnection) -> int | None:
            seconds = await activity.close_viewing(conn, self.stream_id, user_id)
            if seconds is not None:
                await activity.add_event(
                    conn,
                    self.stream_id,
                    "viewer_left",
                    {"user_id": user_id, "watch_duration": seconds},
                )
            return seconds

        seconds: int | None = await self._writes.submit(user_id, op)
        return seconds

    async def chat(
        self, user_id: UUID, message: str, score: float, moderated: bool
    ) -> dict[str, Any]:
        # One post_chat call (sql/0014) for all the messages of a batch.
        draft = activity.ChatDraft(user_id, message, score, moderated)
        row: dict[str, Any] = await self._writes.submit_bulk(self._chat, draft)
        return row

    async def react(self, user_id: UUID, reaction: str) -> dict[str, Any]:
        row: dict[str, Any] = await self._writes.submit_bulk(self._reactions, (user_id, reaction))
        return row
