"""What happens inside a stream: viewers, chat, reactions, reports and the event log.

Writes here are made by the stream's actor (one writer per stream); reads by
the API. Every write that a client can observe also appends an event row.
The event log's `seq` is commit order per stream (sql/0002), so "the events
after seq N" is complete and duplicate-free: paging, replay and the realtime
fan-out (`events_between`, `feed_head`) all rest on it.

Events are read only through the database function `stream_events`, which gives
each reader what their `Audience` may see (sql/0005 `redact_event`, the one place
that says so); the application role cannot read `event_data` itself. Each event
comes with the `username` of the user its data names (`user_id`), for the event
contract (`serve_app.events`), which shows it only where the id is shown.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "Audience",
    "EventRow",
    "add_event",
    "list_events",
    "events_between",
    "feed_head",
    "has_events_after",
    "open_viewing",
    "close_viewing",
    "open_viewers",
    "add_chat",
    "add_chats",
    "ChatDraft",
    "list_chat",
    "soft_delete_chat",
    "add_reaction",
    "add_reactions",
    "add_report",
]

CHAT_COLUMNS = "id, seq, stream_id, user_id, message, is_deleted, is_moderated, created_at"

_LAST_SEQ = 2**63 - 1  # "no upper bound" for stream_events

# The username of the user an event's data names (users are readable by everyone);
# the id is checked before the cast, so odd data never makes a read fail.
_UUID_RE = "'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'"
_WITH_USERNAME = (
    " LEFT JOIN users u ON u.id = CASE WHEN e.event_data->>'user_id' ~ "
    + _UUID_RE
    + " THEN CAST(e.event_data->>'user_id' AS uuid) END"
)
# The realtime fan-out runs these for every batch of notifications: built once.
# Besides the reader's own view of each event, what a signed-in viewer and an
# anonymous caller may see of it, redacted from the reader's view (so never more
# than the reader may see), for the hub to hand each audience its own.
_EVENTS_BETWEEN = text(
    "SELECT e.seq, e.event_type, e.event_data, e.created_at,"
    " redact_event(e.event_type, e.event_data, 'viewer'),"
    " redact_event(e.event_type, e.event_data, 'anonymous'), u.username"
    " FROM stream_events(:s, CAST(:after AS bigint), CAST(:until AS bigint),"
    " CAST(:limit AS integer)) e" + _WITH_USERNAME + " ORDER BY e.seq"
)
_LIST_EVENTS = text(
    "SELECT e.id, e.seq, e.stream_id, e.event_type, e.event_data, e.created_at, u.username"
    " FROM stream_events(:s, CAST(:since AS bigint), CAST(:until AS bigint),"
    " CAST(:limit AS integer), CAST(:t AS text)) e" + _WITH_USERNAME + " ORDER BY e.seq"
)
_FEED_HEAD = text(
    "SELECT s.viewers, (SELECT COALESCE(max(seq), 0) FROM live_stream_events e"
    " WHERE e.stream_id = s.id) AS last_seq FROM live_streams s WHERE s.id = :s"
)
_HAS_EVENTS_AFTER = text(
    "SELECT EXISTS (SELECT 1 FROM stream_events(:s, CAST(:a AS bigint), CAST(:until AS bigint), 1))"
)


class Audience(StrEnum):
    """Who reads a stream's events; each class sees its own redaction of them."""

    OWNER = "owner"  # the stream's owner: everything
    VIEWER = "viewer"  # any other signed-in user who may see the stream
    ANONYMOUS = "anonymous"

    @classmethod
    def of(cls, user_id: UUID | None, owner_id: UUID) -> Audience:
        """The class of `user_id` (None: anonymous) for a stream owned by `owner_id`;
        the same rule as `stream_events` in sql/0005."""
        if user_id is None:
            return cls.ANONYMOUS
        return cls.OWNER if user_id == owner_id else cls.VIEWER


class EventRow(NamedTuple):
    """One event of a stream's log as the realtime fan-out reads it: `event_data` as
    the reader may see it, what the lesser audiences may (None: not shown to them),
    and the username of the user it names."""

    seq: int
    event_type: str
    event_data: dict[str, Any]
    created_at: datetime
    viewer_data: dict[str, Any] | None
    anonymous_data: dict[str, Any] | None
    username: str | None = None  # of the user the data names (`user_id`), if any

    def data_for(self, audience: Audience) -> dict[str, Any] | None:
        """What `audience` may see of this event (never more than the reader could)."""
        if audience is Audience.OWNER:
            return self.event_data
        return self.viewer_data if audience is Audience.VIEWER else self.anonymous_data


async def add_event(
    conn: AsyncConnection, stream_id: UUID, event_type: str, data: dict[str, Any]
) -> dict[str, Any]:
    row = (
        (
            await conn.execute(
                text(
                    "INSERT INTO live_stream_events (stream_id, event_type, event_data)"
                    " VALUES (:s, :t, CAST(:d AS jsonb)) RETURNING id, seq, created_at"
                ),
                {"s": stream_id, "t": event_type, "d": json.dumps(data, default=str)},
            )
        )
        .mappings()
        .one()
    )
    return {**row, "stream_id": stream_id, "event_type": event_type, "event_data": data}


async def list_events(
    conn: AsyncConnection, stream_id: UUID, *, since: int, limit: int, event_type: str | None = None
) -> list[dict[str, Any]]:
    """Events after sequence number `since`, oldest first, as the acting user may see
    them (none if they may not see the stream)."""
    rows = await conn.execute(
        _LIST_EVENTS,
        {"s": stream_id, "since": since, "until": _LAST_SEQ, "limit": limit, "t": event_type},
    )
    return [dict(r) for r in rows.mappings()]


async def events_between(
    conn: AsyncConnection, stream_id: UUID, *, after: int, until: int, limit: int
) -> list[EventRow]:
    """Events with `after < seq <= until` that the acting user may see, oldest first,
    at most `limit` of them."""
    rows = await conn.execute(
        _EVENTS_BETWEEN, {"s": stream_id, "after": after, "until": until, "limit": limit}
    )
    return [EventRow(*r) for r in rows]


async def feed_head(conn: AsyncConnection, stream_id: UUID) -> tuple[int, int]:
    """Where a live feed of the stream starts: its viewer count and its last event's
    seq (0 before the first event)."""
    row = (await conn.execute(_FEED_HEAD, {"s": stream_id})).one()
    return int(row.viewers), int(row.last_seq)


async def has_events_after(conn: AsyncConnection, stream_id: UUID, after: int) -> bool:
    """Whether the stream has an event with seq above `after` that the actor may see."""
    found: bool = (
        await conn.execute(_HAS_EVENTS_AFTER, {"s": stream_id, "a": after, "until": _LAST_SEQ})
    ).scalar_one()
    return found


async def open_viewing(conn: AsyncConnection, stream_id: UUID, user_id: UUID) -> bool:
    """Record a join; False if the user already has an open viewing (idempotent)."""
    result = await conn.execute(
        text(
            "INSERT INTO live_stream_viewers (stream_id, user_id) VALUES (:s, :u)"
            " ON CONFLICT (stream_id, user_id) WHERE left_at IS NULL DO NOTHING"
        ),
        {"s": stream_id, "u": user_id},
    )
    return result.rowcount == 1


async def close_viewing(conn: AsyncConnection, stream_id: UUID, user_id: UUID) -> int | None:
    """Record a leave; the watch duration in seconds, or None if not watching."""
    return (
        await conn.execute(
            text(
                "UPDATE live_stream_viewers SET left_at = now() WHERE"
                " stream_id = :s AND user_id = :u"
                " AND left_at IS NULL RETURNING watch_duration"
            ),
            {"s": stream_id, "u": user_id},
        )
    ).scalar()


async def open_viewers(conn: AsyncConnection, stream_id: UUID) -> set[UUID]:
    """Users currently watching (the actor reads this as the owner to rebuild state)."""
    rows = await conn.execute(
        text("SELECT user_id FROM live_stream_viewers WHERE stream_id = :s AND left_at IS NULL"),
        {"s": stream_id},
    )
    return {r.user_id for r in rows}


async def add_chat(
    conn: AsyncConnection,
    stream_id: UUID,
    user_id: UUID,
    message: str,
    moderated: bool,
    score: float,
) -> dict[str, Any]:
    row = (
        (
            await conn.execute(
                text(
                    "INSERT INTO live_stream_chat (stream_id, user_id, message, is_moderated,"
                    f" moderation_score) VALUES (:s, :u, :m, :mod, :score) RETURNING {CHAT_COLUMNS}"
                ),
                {"s": stream_id, "u": user_id, "m": message, "mod": moderated, "score": score},
            )
        )
        .mappings()
        .one()
    )
    return dict(row)


class ChatDraft(NamedTuple):
    """A message to store: its author, text, moderation score and whether it is hidden."""

    user_id: UUID
    message: str
    score: float
    moderated: bool


# sql/0014: a batch of messages (or reactions) and their events in one call, each row
# written acting as its author, so every policy holds per row as with `add_chat`.
_POST_CHAT = text(
    f"SELECT {CHAT_COLUMNS} FROM post_chat(:s, CAST(:u AS uuid[]), CAST(:m AS text[]),"
    " CAST(:score AS real[]), CAST(:mod AS boolean[]))"
)
_POST_REACTIONS = text(
    "SELECT id, stream_id, user_id, reaction, created_at"
    " FROM post_reactions(:s, CAST(:u AS uuid[]), CAST(:r AS text[]))"
)


async def add_chats(
    conn: AsyncConnection, stream_id: UUID, drafts: list[ChatDraft]
) -> list[dict[str, Any]]:
    """Store messages with their events (`chat_message`, or `moderation_action`
    without the text for a hidden one) in one round trip; rows in `drafts` order.
    The transaction's acting user is afterwards the last author."""
    rows = await conn.execute(
        _POST_CHAT,
        {
            "s": stream_id,
            "u": [d.user_id for d in drafts],
            "m": [d.message for d in drafts],
            "score": [d.score for d in drafts],
            "mod": [d.moderated for d in drafts],
        },
    )
    return [dict(r) for r in rows.mappings()]


async def add_reactions(
    conn: AsyncConnection, stream_id: UUID, drafts: list[tuple[UUID, str]]
) -> list[dict[str, Any]]:
    """Store `(user_id, reaction)`s with their `reaction` events in one round trip."""
    rows = await conn.execute(
        _POST_REACTIONS,
        {"s": stream_id, "u": [u for u, _ in drafts], "r": [r for _, r in drafts]},
    )
    return [dict(r) for r in rows.mappings()]


async def list_chat(
    conn: AsyncConnection, stream_id: UUID, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """Visible chat, newest first; RLS hides moderated and deleted messages from others."""
    extra = " AND seq < :before" if before is not None else ""
    rows = await conn.execute(
        text(
            f"SELECT {CHAT_COLUMNS} FROM live_stream_chat WHERE stream_id = :s{extra}"
            " ORDER BY seq DESC LIMIT :limit"
        ),
        {"s": stream_id, "before": before, "limit": limit},
    )
    return [dict(r) for r in rows.mappings()]


async def soft_delete_chat(
    conn: AsyncConnection, stream_id: UUID, message_id: UUID
) -> dict[str, Any] | None:
    """Mark a message deleted; None if it is not the actor's to delete."""
    row = (
        (
            await conn.execute(
                text(
                    "UPDATE live_stream_chat SET is_deleted = true WHERE id = :m AND stream_id = :s"
                    f" RETURNING {CHAT_COLUMNS}"
                ),
                {"m": message_id, "s": stream_id},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def add_reaction(
    conn: AsyncConnection, stream_id: UUID, user_id: UUID, reaction: str
) -> dict[str, Any]:
    row = (
        (
            await conn.execute(
                text(
                    "INSERT INTO live_stream_reactions (stream_id, user_id,"
                    " reaction) VALUES (:s, :u, :r)"
                    " RETURNING id, stream_id, user_id, reaction, created_at"
                ),
                {"s": stream_id, "u": user_id, "r": reaction},
            )
        )
        .mappings()
        .one()
    )
    return dict(row)


async def add_report(
    conn: AsyncConnection, stream_id: UUID, user_id: UUID, reason: str, details: str
) -> dict[str, Any] | None:
    """File a report; None if this user already reported this stream."""
    row = (
        (
            await conn.execute(
                text(
                    "INSERT INTO stream_reports (stream_id, reporter_id, reason, details)"
                    " VALUES (:s, :u, :r, :d) ON CONFLICT DO NOTHING"
                    " RETURNING id, stream_id, reporter_id, reason, details, created_at"
                ),
                {"s": stream_id, "u": user_id, "r": reason, "d": details},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None
