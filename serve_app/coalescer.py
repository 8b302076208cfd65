"""Messages to real-time subscribers, and the coalescing rule that makes them.

Audiences: the owner, signed-in viewers and anonymous callers may each see a
different part of an event (sql/0005 `redact_event`; `lumalive.store.activity.Audience`).
The coalescer turns each event into a `Broadcast`: per audience class, the `Message`
that class gets, or None where it may not see the event. Each message is encoded
once per replica and per distinct content (for SSE and for WebSocket), not once per
subscriber: classes that see the same data share one encoding, and the hub
(`serve_app.fanout`) hands the same `Message` to every subscriber of a class.
Reaction batches and viewer counts carry only counts, which every class may see.

Coalescing (so thousands of reactions/s do not become thousands of messages/s
per viewer):
- `reaction` events go out one by one, as they commit, while the stream is
  quiet: the first `singles_per_tick` (4) reactions of each tick (250 ms). Past
  that, until the next tick, consecutive reactions are summed into one
  `reaction_batch` (`counts` by reaction, `total`, and the seq range it covers),
  sent at the tick and just before any other event, so messages stay in seq
  order and its `id` (the last seq it covers) is a valid resume point. Reaction
  messages per viewer per second are therefore at most (4 + 1) per tick, 20/s,
  whatever the reaction rate; a replay (no ticks) sends the first 4 one by one and
  batches the rest.
- `viewer_count` (`{"viewerCount": n}`) is sent at most once per tick, when the
  count changed (and once on subscribe). It carries no id: it is state, not an event.
- Everything else (stream_started, stream_ended, viewer_joined, viewer_left,
  chat_message, moderation_action, report, ...) is sent as it commits, to the
  classes that may see it.

Every message is in the event contract's shape (`serve_app.events`).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from lumalive.store.activity import Audience, EventRow
from serve_app.events import encode, envelope, event_data

__all__ = [
    "Message",
    "Broadcast",
    "Coalescer",
    "reaction_batch",
    "viewer_count",
    "SINGLES_PER_TICK",
]

# Reactions per tick delivered one by one before the rest are batched (see above).
SINGLES_PER_TICK = 4


class Message:
    """One message as one audience class gets it, encoded once for SSE and once for
    WebSocket. `data` is in client form (`serve_app.events.event_data`)."""

    __slots__ = ("id", "type", "data", "first_seq", "items", "sse", "ws")

    def __init__(
        self,
        stream_id: UUID,
        type_: str,
        data: dict[str, Any],
        *,
        id_: int | None,
        created_at: datetime | None = None,
        first_seq: int | None = None,
        items: tuple[tuple[int, str], ...] = (),
    ) -> None:
        self.id = id_
        self.type = type_
        self.data = data
        self.first_seq = first_seq  # reaction_batch: the first seq it covers
        self.items = items  # reaction_batch: (seq, reaction), to cut a partial batch
        body = encode(envelope(id_, type_, stream_id, created_at, data))
        self.ws = body
        head = f"id: {id_}\n" if id_ is not None else ""
        self.sse = f"{head}event: {type_}\ndata: {body}\n\n".encode()


class Broadcast:
    """One message for every audience class: each class's `Message`, or None where the
    class may not see it (at least one class gets it). `id`, `type` and `first_seq`
    are the same for all."""

    __slots__ = ("id", "type", "first_seq", "_by_audience")

    def __init__(self, by_audience: dict[Audience, Message | None]) -> None:
        sent = next(m for m in by_audience.values() if m is not None)
        self.id = sent.id
        self.type = sent.type
        self.first_seq = sent.first_seq
        self._by_audience = by_audience

    @classmethod
    def to_all(cls, msg: Message) -> Broadcast:
        """The same message for every class."""
        return cls(dict.fromkeys(Audience, msg))

    @classmethod
    def of_event(cls, stream_id: UUID, row: EventRow) -> Broadcast:
        """An event as each class may see it, encoded once per distinct content."""
        encoded: list[Message] = []
        by_audience: dict[Audience, Message | None] = {}
        for audience in Audience:
            stored = row.data_for(audience)
            msg = None
            if stored is not None:
                data = event_data(stored, row.username)
                msg = next((m for m in encoded if m.data == data), None)
                if msg is None:
                    msg = Message(
                        stream_id, row.event_type, data, id_=row.seq, created_at=row.created_at
                    )
                    encoded.append(msg)
            by_audience[audience] = msg
        return cls(by_audience)

    def to(self, audience: Audience) -> Message | None:
        """What `audience` gets (None: nothing)."""
        return self._by_audience[audience]


def reaction_batch(
    stream_id: UUID, items: list[tuple[int, str]] | tuple[tuple[int, str], ...]
) -> Message:
    """Consecutive reactions as one message; its id is the last seq it covers."""
    counts = Counter(r for _, r in items)
    return Message(
        stream_id,
        "reaction_batch",
        {
            "counts": dict(counts),
            "total": len(items),
            "firstSeq": items[0][0],
            "lastSeq": items[-1][0],
        },
        id_=items[-1][0],
        created_at=datetime.now(UTC),
        first_seq=items[0][0],
        items=tuple(items),
    )


def viewer_count(stream_id: UUID, viewers: int) -> Message:
    """State, not an event: no id, so it is never a resume point."""
    return Message(
        stream_id, "viewer_count", {"viewerCount": viewers}, id_=None, created_at=datetime.now(UTC)
    )


class Coalescer:
    """Turns a stream's event rows, in seq order, into messages (see the module's rules).

    `feed` each row as it commits; call `tick` every `tick_s` (and at stream_ended)
    for the pending reaction batch and the viewer count if it changed. `viewers` is
    the count as of the rows fed so far, starting from `viewers` (already sent).
    """

    def __init__(
        self, stream_id: UUID, viewers: int = 0, *, singles_per_tick: int = SINGLES_PER_TICK
    ) -> None:
        self.stream_id = stream_id
        self.viewers = viewers
        self._viewers_sent = viewers
        self._pending: list[tuple[int, str]] = []
        self._singles_per_tick = singles_per_tick
        self._singles_left = singles_per_tick

    def feed(self, row: EventRow) -> list[Broadcast]:
        if row.event_type == "reaction":
            # One by one while quiet; once one is pending, the rest of the tick joins
            # it, so order is kept.
            if not self._pending and self._singles_left > 0:
                self._singles_left -= 1
                return [Broadcast.of_event(self.stream_id, row)]
            self._pending.append((row.seq, str(row.event_data.get("reaction", ""))))
            return []
        if row.event_type == "viewer_joined":
            self.viewers += 1
        elif row.event_type == "viewer_left":
            self.viewers = max(0, self.viewers - 1)
        elif row.event_type == "stream_ended":
            self.viewers = 0
        out = self.flush()
        out.append(Broadcast.of_event(self.stream_id, row))
        return out

    def flush(self) -> list[Broadcast]:
        """The pending reactions as one batch (nothing if none are pending)."""
        if not self._pending:
            return []
        batch, self._pending = self._pending, []
        return [Broadcast.to_all(reaction_batch(self.stream_id, batch))]

    def tick(self) -> list[Broadcast]:
        """`flush`, then a `viewer_count` if the count changed since the last one sent;
        a new tick's reactions go out one by one again."""
        out = self.flush()
        self._singles_left = self._singles_per_tick
        if self.viewers != self._viewers_sent:
            self._viewers_sent = self.viewers
            out.append(Broadcast.to_all(viewer_count(self.stream_id, self.viewers)))
        return out
