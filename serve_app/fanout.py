"""Real-time fan-out: a stream's events to the SSE and WebSocket subscribers of this API replica.

How an event travels: a stream actor commits a row in `live_stream_events`; a
trigger (sql/0002) sends `NOTIFY lumalive_events '<stream_id>:<seq>'`; every API
replica holds one LISTEN connection (`EventHub`), and for a stream that has
subscribers on this replica it fetches the new rows once (`seq > last`, acting
as the stream's owner, with what a signed-in viewer and an anonymous caller may
see of each: sql/0005), coalesces them (`serve_app.coalescer`) and hands each
subscriber the message encoded for its audience class (`serve_app.subscription`).

Invariants:
- Per stream, seq order is commit order (sql/0002), so "everything after seq N"
  is complete and duplicate-free. The hub, the replay of a reconnecting client
  (SSE `Last-Event-ID` = the last seq it saw) and `GET .../events?since=` all
  rest on it.
- Under load a stream's new events are fetched at most every `coalesce_s` (50 ms) and
  each subscriber is woken once per fetch, so a subscriber costs one write per
  batch, not one per event; order and ids are untouched (the batch is a run of seqs).
- Moderated chat produces only a `moderation_action` event (no text), so the
  text never reaches other viewers.
- A subscriber gets of each event only what its audience class may see; replay
  reads as the subscriber, so the database redacts it for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

from lumalive import metrics
from lumalive.db import Database
from lumalive.errors import Unavailable
from lumalive.store import activity
from lumalive.store.activity import EventRow
from serve_app.coalescer import Broadcast, Coalescer, Message, viewer_count
from serve_app.pg_listener import listen_forever
from serve_app.subscription import Subscription

__all__ = [
    "EventHub",
    "Broadcast",
    "Message",
    "Subscription",
    "Coalescer",
    "CHANNEL",
    "viewer_count",
]

log = logging.getLogger(__name__)

CHANNEL = "lumalive_events"
_PAGE = 500
_NO_LIMIT = 2**62


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
        self.last_fetch = 0.0  # monotonic time of the last fetch (coalescing)
        self.more = False  # the last fetch was a full page: fetch again at once


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
        coalesce_s: float = 0.05,
    ) -> None:
        self._db = db
        self._coalesce_s = coalesce_s
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
        channel = await self._channel(stream)
        sub = Subscription(self, stream, actor, transport, self._max_queue)
        sub.resume_from(channel.last_seq, after)
        channel.subs.add(sub)
        self._count(transport, 1)
        sub.offer(Broadcast.to_all(viewer_count(channel.stream_id, channel.coalescer.viewers)))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        channel = self._channels.get(sub.stream_id)
        if channel is None or sub not in channel.subs:
            return
        channel.subs.discard(sub)
        self._count(sub.transport, -1)
        if not channel.subs:
            del self._channels[sub.stream_id]
            if channel.task is not None and not channel.task.done():
                channel.task.cancel()

    async def _channel(self, stream: dict[str, Any]) -> _Channel:
        """The stream's channel on this replica, opened by the first subscriber; the
        others wait until it has read the stream's head."""
        sid = stream["id"]
        channel = self._channels.get(sid)
        if channel is None:
            channel = self._channels[sid] = _Channel(stream)
            await self._open(channel)
        await channel.ready.wait()
        if self._channels.get(sid) is not channel:
            raise Unavailable("could not open the stream's event feed; retry", "feed_unavailable")
        return channel

    async def _open(self, channel: _Channel) -> None:
        """Read the stream's head (viewers, last seq); if that fails, drop the channel."""
        try:
            async with self._db.acting(channel.owner_id) as conn:
                viewers, channel.last_seq = await activity.feed_head(conn, channel.stream_id)
        except BaseException:
            self._channels.pop(channel.stream_id, None)
            channel.ready.set()  # wake other waiters; they see the channel is gone
            raise
        channel.coalescer = Coalescer(channel.stream_id, viewers)
        channel.ready.set()
        if channel.dirty:
            self._poke(channel)

    def _count(self, transport: str, delta: int) -> None:
        self._by_transport[transport] += delta
        metrics.realtime_subscribers().set(
            self._by_transport[transport], tags={"transport": transport}
        )

    async def replay(
        self, sub: Subscription, after: int, until: int
    ) -> AsyncIterator[list[Message]]:
        """What a reconnecting client missed, read as that client (RLS, and redacted
        for them), coalesced by the same rule as live delivery."""
        coalescer = Coalescer(sub.stream_id)
        while after < until:
            async with self._db.acting(sub.actor) as conn:
                rows = await activity.events_between(
                    conn, sub.stream_id, after=after, until=until, limit=_PAGE
                )
            if not rows:
                break
            after = rows[-1].seq
            out = [b for r in rows for b in coalescer.feed(r)]
            if after >= until or len(rows) < _PAGE:
                out += coalescer.flush()
            page = [m for b in out if (m := b.to(sub.audience)) is not None]
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
        await listen_forever(
            self._dsn, self._role, CHANNEL, self._on_notify, self._on_listening, log, "event"
        )

    def _on_listening(self) -> None:
        if self._listening.is_set():  # a reconnect: catch up on what we missed
            for channel in list(self._channels.values()):
                self._poke(channel)
        self._listening.set()

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
            wait = channel.last_fetch + self._coalesce_s - time.monotonic()
            if wait > 0 and not channel.more:
                # Under load (commits closer than coalesce_s): what commits meanwhile is
                # fetched once and each subscriber woken once for all of it.
                await asyncio.sleep(wait)
            channel.last_fetch = time.monotonic()
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
            channel.more = len(rows) == _PAGE
            if channel.more:
                channel.dirty = True
            self._deliver(channel, rows)

    def _deliver(self, channel: _Channel, rows: Sequence[EventRow]) -> None:
        now = time.time()
        lag = metrics.fanout_lag_ms()
        for row in rows:
            lag.observe(max(0.0, (now - row.created_at.timestamp()) * 1000))
            channel.last_seq = row.seq
            for out in channel.coalescer.feed(row):
                self._send(channel, out)
            if row.event_type == "user_banned":
                self._cut_off(channel, str(row.event_data.get("user_id")))
        if any(r.event_type == "stream_ended" for r in rows):
            self._flush(channel)

    def _cut_off(self, channel: _Channel, user_id: str) -> None:
        """A user banned from the stream (sql/0006): end their subscriptions here, as
        for a subscriber too far behind; a reconnect is refused (403 banned_from_stream)."""
        for sub in list(channel.subs):
            if str(sub.actor) == user_id:
                sub.overflowed = True
                sub.keepalive()  # wakes its `batches()`, which then ends

    def _send(self, channel: _Channel, out: Broadcast) -> None:
        for sub in list(channel.subs):
            sub.offer(out)

    def _flush(self, channel: _Channel) -> None:
        for out in channel.coalescer.tick():
            self._send(channel, out)

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
