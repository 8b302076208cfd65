"""One client's subscription to a stream's events on this replica: replay, then live.

Invariants:
- A subscription sees a stream's events exactly when the subscriber may see the
  stream, checked when it subscribes. A stream's privacy never changes, and
  friendships and invites are never revoked, so the check holds while the
  connection lasts; a reconnect checks again.
- Of each event it gets only what its audience class (owner, signed-in viewer,
  anonymous) may see: its class's `Message` of each `Broadcast`, and nothing of
  those its class does not get.
- `cursor` is the last seq handed to the client; anything at or below it is
  dropped, so a message is never delivered twice (a reaction batch straddling it
  is cut to what the client has not seen).
- A subscriber that falls `max_queue` messages behind is disconnected rather
  than buffered without bound; it reconnects with its last id and replays from
  the table.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Protocol
from uuid import UUID

from lumalive import metrics
from lumalive.status import StreamStatus
from lumalive.store.activity import Audience
from serve_app.coalescer import Broadcast, Message, reaction_batch

__all__ = ["Subscription", "Hub"]


class Hub(Protocol):
    """What a subscription needs of its replica's hub (`serve_app.fanout.EventHub`)."""

    def replay(self, sub: Subscription, after: int, until: int) -> AsyncIterator[list[Message]]:
        """The stream's messages in (`after`, `until`], read as the subscriber."""
        ...

    def unsubscribe(self, sub: Subscription) -> None: ...


class Subscription:
    """One client's view of a stream: replay of what it missed, then live messages.
    `cursor` is the last seq handed to this client (see the module's invariants)."""

    def __init__(
        self,
        hub: Hub,
        stream: dict[str, Any],
        actor: UUID | None,
        transport: str,
        max_queue: int,
    ) -> None:
        self.hub = hub
        self.stream_id: UUID = stream["id"]
        self.actor = actor
        self.audience = Audience.of(actor, stream["user_id"])
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

    def resume_from(self, head: int, after: int | None) -> None:
        """Start after `head`, the last seq this replica handed out, replaying what the
        client missed since `after` (the last seq it saw; None: from now on)."""
        # Everything up to head has already been handed out on this replica,
        # so live delivery to this subscriber starts right after it.
        self.cursor = head
        if after is not None and after < head:
            self.replay_after, self.replay_until = after, head
        elif after is not None:
            self.cursor = after  # the client is ahead of this replica: skip what it has

    def offer(self, out: Broadcast) -> None:
        """Called by the hub (synchronously, in seq order)."""
        msg = out.to(self.audience)
        if self.overflowed or msg is None:
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
