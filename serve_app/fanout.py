"""Real-time fan-out: a stream's events to the SSE and WebSocket subscribers of this API replica.

How an event travels: a stream actor commits a row in `live_stream_events`; a
trigger (sql/0002) sends `NOTIFY lumalive_events '<stream_id>:<seq>'`; every API
replica holds one LISTEN connection (`EventHub`), and for a stream that has
subscribers on this replica it fetches the new rows once (`seq > last`, acting
as the stream's owner) and hands the same encoded message to each subscriber.
Each message is encoded once per replica, not once per subscriber.

Invariants:
- Per stream, seq order is commit order (sql/0002), so "everything after seq N"
  is complete and duplicate-free. The hub, the replay of a reconnecting client
  (SSE `Last-Event-ID` = the last seq it saw) and `GET .../events?since=` all
  rest on it.
- A subscription sees a stream's events exactly when the subscriber may see the
  stream, checked when it subscribes. A stream's privacy never changes, and
  friendships and invites are never revoked, so the check holds while the
  connection lasts; a reconnect checks again.
- Moderated chat produces only a `moderation_action` event (no text), so the
  text never reaches other viewers.

Coalescing (so thousands of reactions/s do not become thousands of messages/s
per viewer):
- `reaction` events are never sent one by one: consecutive reactions are summed
  into one `reaction_batch` (counts by reaction, and the seq range it covers).
  A batch is sent every `tick_s` (250 ms) and just before any other event, so
  messages stay in seq order and its `id` (the last seq it covers) is a valid
  resume point. Messages per viewer per second are therefore at most the rate
  of the other events plus 1/tick_s (4/s), whatever the reaction rate.
- `viewer_count` is sent at most once per tick, when the count changed (and
  once on subscribe). It carries no id: it is state, not an event.
- Everything else (stream_started, stream_ended, viewer_joined, viewer_left,
  chat_message, moderation_action, report, ...) is sent as it commits.

A subscriber that falls `max_queue` messages behind is disconnected rather
than buffered without bound; it reconnects with its last id and replays from
the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from lumalive import metrics
from lumalive.db import Database
from lumalive.errors import Unavailable
from lumalive.status import StreamStatus
from lumalive.store import activity
from lumalive.store.activity import EventRow

__all__ = ["EventHub", "Message", "Subscription", "Coalescer", "CHANNEL", "viewer_count"]

log = logging.getLogger(__name__)

CHANNEL = "lumalive_events"
_PAGE = 500
_NO_LIMIT = 2**62


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


class Message:
    """One message to subscribers, encoded once for SSE and once for WebSocket."""

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
        body = _json(
            {
                "id": id_,
                "type": type_,
                "stream_id": stream_id,
                "data": data,
                "created_at": created_at,
            }
        )
        self.ws = body
        head = f"id: {id_}\n" if id_ is not None else ""
        self.sse = f"{head}event: {type_}\ndata: {body}\n\n".encode()


def reaction_batch(
    stream_id: UUID, items: list[tuple[int, str]] | tuple[tuple[int, str], ...]
) -> Message:
    counts = Counter(r for _, r in items)
    return Message(
        stream_id,
        "reaction_batch",
        {
            "reactions": dict(counts),
            "total": len(items),
            "first_seq": items[0][0],
            "last_seq": items[-1][0],
        },
        id_=items[-1][0],
        created_at=datetime.now(UTC),
        first_seq=items[0][0],
        items=tuple(items),
    )


class Coalescer:
    """Turns a stream's event rows, in seq order, into messages (see the module's rules).

    `feed` each row as it commits; call `tick` every `tick_s` (and at stream_ended)
    for the pending reaction batch and the viewer count if it changed. `viewers` is
    the count as of the rows fed so far, starting from `viewers` (already sent).
    """

    def __init__(self, stream_id: UUID, viewers: int = 0) -> None:
        self.stream_id = stream_id
        self.viewers = viewers
        self._viewers_sent = viewers
        self._pending: list[tuple[int, str]] = []

    def feed(self, row: EventRow) -> list[Message]:
        if row.event_type == "reaction":
            self._pending.append((row.seq, str(row.event_data.get("reaction", ""))))
            return []
        if row.event_type == "viewer_joined":
            self.viewers += 1
        elif row.event_type == "viewer_left":
            self.viewers = max(0, self.viewers - 1)
        elif row.event_type == "stream_ended":
            self.viewers = 0
        out = self.flush()
        out.append(
            Message(
                self.stream_id,
                row.event_type,
                row.event_data,
                id_=row.seq,
                created_at=row.created_at,
            )
        )
        return out

    def flush(self) -> list[Message]:
        """The pending reactions as one batch (nothing if none are pending)."""
        if not self._pending:
            return []
        batch, self._pending = self._pending, []
        return [reaction_batch(self.stream_id, batch)]

    def tick(self) -> list[Message]:
        """`flush`, then a `viewer_count` if the count changed since the last one sent."""
        out = self.flush()
        if self.viewers != self._viewers_sent:
            self._viewers_sent = self.viewers
            out.append(viewer_count(self.stream_id, self.viewers))
        return out


def viewer_count(stream_id: UUID, viewers: int) -> Message:
    """State, not an event: no id, so it is never a resume point."""
    return Message(
        stream_id, "viewer_count", {"viewers": viewers}, id_=None, created_at=datetime.now(UTC)
    )


class Subscription:
    """One client's view of a stream: replay of what it missed, then live messages.

    `cursor` is the last seq handed to this client; anything at or below it is
    dropped, so a message is never delivered twice.
    """

    def __init__(
        self,
        hub: EventHub,
        stream: dict[str, Any],
        actor: UUID | None,
        transport: str,
        max_queue: int,
    ) -> None:
        self.hub = hub
        self.stream_id: UUID = stream["id"]
        self.actor = actor
        self.transport = transport
        self.cursor = 0
        self.replay_after: int | None = None
        self.replay_until = 0
        self.ended = False  # stream_ended was delivered: the connection may close
        # An ended stream has nothing live to wait for: send what was missed, then stop.
        self.replay_only = stream["status"] == StreamStatus.ENDED
        self.overflowed = False
        self._queue: deque[Message] = deque()
        self._max_queue = max_queue
        self._wake = asyncio.Event()
        self._idle_ping = False

    def offer(self, msg: Message) -> None:
        """Called by the hub (synchronously, in seq order)."""
        if self.overflowed:
            return
        if msg.id is not None:
            if msg.id <= self.cursor:
                return
            if msg.first_seq is not None and msg.first_seq <= self.cursor:
                # A batch straddling our start: keep only what we have not seen.
                msg = reaction_batch(self.stream_id, [i for i in msg.items if i[0] > self.cursor])
            self.cursor = msg.id or self.cursor
        if len(self._queue) >= self._max_queue:
            self.overflowed = True
            self._queue.clear()
            metrics.fanout_dropped().inc()
        else:
            self._queue.append(msg)
        self._wake.set()

    def keepalive(self) -> None:
        """Wake the consumer with nothing to send (the hub calls this every
        `keepalive_s`), so it writes a keep-alive and notices a dead peer."""
        self._idle_ping = True
        self._wake.set()

    async def batches(self) -> AsyncIterator[list[Message]]:
        """Lists of messages in order: first the replay, then live ones as they come.
        An empty list is a keep-alive. Ends after stream_ended, or when this
        subscriber fell too far behind."""
        if self.replay_after is not None:
            async for page in self.hub.replay(self, self.replay_after, self.replay_until):
                yield page
                if self.ended:
                    return
        if self.replay_only:
            return
        while not self.overflowed:
            if not self._queue:
                self._wake.clear()
                # No timeout here (wait_for costs a task per wake-up, and a replica
                # has thousands of these); the hub's ticks send keep-alives.
                await self._wake.wait()
            if self.overflowed:
                return
            if not self._queue:
                if self._idle_ping:
                    self._idle_ping = False
                    yield []
                continue
            batch = list(self._queue)
            self._queue.clear()
            if any(m.type == "stream_ended" for m in batch):
                self.ended = True
            yield batch
            if self.ended:
                return

    def close(self) -> None:
        self.hub.unsubscribe(self)


class _Channel:
    """A stream with subscribers on this replica."""

    def __init__(self, stream: dict[str, Any]) -> None:
        self.stream_id: UUID = stream["id"]
        self.owner_id: UUID = stream["user_id"]
        self.subs: set[Subscription] = set()
        self.last_seq = 0
        self.coalescer = Coalescer(self.stream_id)  # replaced once the head is read
        self.ready = asyncio.Event()
        self.dirty = False
        self.task: asyncio.Task[None] | None = None


class EventHub:
    """One per API replica: the LISTEN connection and the streams' channels."""

    def __init__(
        self,
        db: Database,
        database_url: str,
        *,
        role: str = "lumalive_app",
        tick_s: float = 0.25,
        keepalive_s: float = 15.0,
        max_queue: int = 10_000,
    ) -> None:
        self._db = db
        # SQLAlchemy URL -> libpq URL for the raw psycopg listener.
        self._dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._role = role
        self._tick_s = tick_s
        self._keepalive_s = keepalive_s
        self._max_queue = max_queue
        self._channels: dict[UUID, _Channel] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()
        self._by_transport: Counter[str] = Counter()

    @property
    def subscribers(self) -> int:
        return sum(self._by_transport.values())

    # -- subscribing -------------------------------------------------------
    async def subscribe(
        self, stream: dict[str, Any], actor: UUID | None, *, after: int | None, transport: str
    ) -> Subscription:
        """Register a subscriber of a stream it may see (the caller checked).
        `after`: the last seq the client saw (replay what follows), or None for
        "from now on"."""
        await self._start()
        sid = stream["id"]
        channel = self._channels.get(sid)
        if channel is None:
            channel = self._channels[sid] = _Channel(stream)
            try:
                async with self._db.acting(channel.owner_id) as conn:
                    viewers, channel.last_seq = await activity.feed_head(conn, sid)
            except BaseException:
                self._channels.pop(sid, None)
                channel.ready.set()  # wake other waiters; they see the channel is gone
                raise
            channel.coalescer = Coalescer(sid, viewers)
            channel.ready.set()
            if channel.dirty:
                self._poke(channel)
        await channel.ready.wait()
        if self._channels.get(sid) is not channel:
            raise Unavailable("could not open the stream's event feed; retry", "feed_unavailable")
        sub = Subscription(self, stream, actor, transport, self._max_queue)
        # Everything up to last_seq has already been handed out on this replica,
        # so live delivery to this subscriber starts right after it.
        sub.cursor = channel.last_seq
        if after is not None and after < channel.last_seq:
            sub.replay_after, sub.replay_until = after, channel.last_seq
        elif after is not None:
            sub.cursor = after  # the client is ahead of this replica: skip what it has
        channel.subs.add(sub)
        self._by_transport[transport] += 1
        metrics.realtime_subscribers().set(
            self._by_transport[transport], tags={"transport": transport}
        )
        sub.offer(viewer_count(sid, channel.coalescer.viewers))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        channel = self._channels.get(sub.stream_id)
        if channel is None or sub not in channel.subs:
            return
        channel.subs.discard(sub)
        self._by_transport[sub.transport] -= 1
        metrics.realtime_subscribers().set(
            self._by_transport[sub.transport], tags={"transport": sub.transport}
        )
        if not channel.subs:
            del self._channels[sub.stream_id]
            if channel.task is not None and not channel.task.done():
                channel.task.cancel()

    async def replay(
        self, sub: Subscription, after: int, until: int
    ) -> AsyncIterator[list[Message]]:
        """What a reconnecting client missed, read as that client (RLS), coalesced
        by the same rule as live delivery."""
        coalescer = Coalescer(sub.stream_id)
        while after < until:
            async with self._db.acting(sub.actor) as conn:
                rows = await activity.events_between(
                    conn, sub.stream_id, after=after, until=until, limit=_PAGE
                )
            if not rows:
                break
            after = rows[-1].seq
            page = [m for r in rows for m in coalescer.feed(r)]
            if after >= until or len(rows) < _PAGE:
                page += coalescer.flush()
            if any(m.type == "stream_ended" for m in page):
                sub.ended = True
            if page:
                yield page

    # -- listening and fetching -------------------------------------------
    async def _start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._tick())]
        # Subscribe only once LISTEN is in place, so no notification is missed.
        await asyncio.wait_for(self._listening.wait(), 30)

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True
                ) as conn:
                    await conn.execute(f'SET ROLE "{self._role}"')
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if self._listening.is_set():  # a reconnect: catch up on what we missed
                        for channel in list(self._channels.values()):
                            self._poke(channel)
                    self._listening.set()
                    backoff = 0.5
                    async for note in conn.notifies():
                        self._on_notify(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a dropped connection: reconnect
                log.warning("event listener lost its connection; reconnecting", exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _on_notify(self, payload: str) -> None:
        sid, _, seq = payload.partition(":")
        try:
            channel = self._channels.get(UUID(sid))
        except ValueError:
            return
        if channel is not None and int(seq) > channel.last_seq:
            self._poke(channel)

    def _poke(self, channel: _Channel) -> None:
        channel.dirty = True
        if channel.ready.is_set() and (channel.task is None or channel.task.done()):
            channel.task = asyncio.create_task(self._drain(channel))

    async def _drain(self, channel: _Channel) -> None:
        """Fetch what is new for a stream, once for all its subscribers here."""
        while channel.dirty and channel.subs:
            channel.dirty = False
            try:
                async with self._db.acting(channel.owner_id) as conn:
                    rows = await activity.events_between(
                        conn,
                        channel.stream_id,
                        after=channel.last_seq,
                        until=_NO_LIMIT,
                        limit=_PAGE,
                    )
            except Exception:  # noqa: BLE001 - retry on the next notification or tick
                log.warning("fetching events of %s failed", channel.stream_id, exc_info=True)
                channel.dirty = True
                await asyncio.sleep(0.5)
                continue
            if len(rows) == _PAGE:
                channel.dirty = True
            self._deliver(channel, rows)

    def _deliver(self, channel: _Channel, rows: Sequence[EventRow]) -> None:
        now = time.time()
        lag = metrics.fanout_lag_ms()
        for row in rows:
            lag.observe(max(0.0, (now - row.created_at.timestamp()) * 1000))
            channel.last_seq = row.seq
            for msg in channel.coalescer.feed(row):
                self._send(channel, msg)
        if any(r.event_type == "stream_ended" for r in rows):
            self._flush(channel)

    def _send(self, channel: _Channel, msg: Message) -> None:
        for sub in list(channel.subs):
            sub.offer(msg)

    def _flush(self, channel: _Channel) -> None:
        for msg in channel.coalescer.tick():
            self._send(channel, msg)

    async def _tick(self) -> None:
        last_keepalive = time.monotonic()
        while True:
            await asyncio.sleep(self._tick_s)
            for channel in list(self._channels.values()):
                self._flush(channel)
            if time.monotonic() - last_keepalive >= self._keepalive_s:
                last_keepalive = time.monotonic()
                for channel in list(self._channels.values()):
                    for sub in list(channel.subs):
                        sub.keepalive()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
