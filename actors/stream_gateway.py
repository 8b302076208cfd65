"""Typed calls to the stream actors: one method per `StreamSession` operation.

Callers write `await gateway.chat(stream, user, text, score, moderated)`, so readers
and type checkers can follow a call across the Ray boundary. `_call` is the one
place that turns what Ray raises into domain errors:

- the actor raised a `LumaError`: it comes back as itself (Ray wraps it in a
  `RayTaskError`); `stream_not_live` also forgets the actor, since we reached
  the actor of a stream that has ended;
- the actor died or cannot be reached: its handle is dropped and the stream's
  status read again: not live any more (another replica ended it and stopped
  its actor) → Conflict `stream_not_live`; still live → 503 `stream_restarting`.
  Calls are not retried: a chat message must not be written twice.

Chat messages and reactions go through a `CallLane` per stream and kind: what
arrives while earlier batches are in flight goes in one `chat_many`/`react_many`
call (fewer Ray calls under load), and a full lane refuses at once (429
`stream_busy`). A refusal of one item (rate limit, stream_busy) reaches only its
caller.

Handles are cached per stream. `on_change(stream_id)` is called whenever what
callers may have cached of a stream is stale (it started, ended or its actor
went away); the API passes its visibility cache's `invalidate`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast
from uuid import UUID

from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

from actors import stream_actor
from actors.call_lane import CallLane
from lumalive.errors import Conflict, LumaError, Unavailable
from lumalive.settings import Settings
from lumalive.status import StreamStatus

__all__ = ["StreamGateway", "StatusCheck", "Connect"]

# A stream's row as the caller read it: the gateway needs its "id" and "user_id".
Stream = Mapping[str, Any]
# A `StreamActor` handle; Ray's stubs cannot type its methods, this class does.
Handle = Any
# The stream's status now, read through any cache: (stream_id, owner_id) -> status.
StatusCheck = Callable[[UUID, UUID], Awaitable[str]]
# The stream's actor, created if need be: (stream_id, owner_id) -> handle.
Connect = Callable[[UUID, UUID], Handle]
_Op = Callable[[Handle], Awaitable[dict[str, Any]]]


def _nothing(_: UUID) -> None:
    return None


class StreamGateway:
    """The stream actors as seen by one process (an API replica, the ingest service)."""

    def __init__(
        self,
        settings: Settings,
        status_now: StatusCheck,
        *,
        on_change: Callable[[UUID], None] = _nothing,
        connect: Connect | None = None,
        stop: Callable[[Handle], None] = stream_actor.stop,
    ) -> None:
        """`connect` and `stop` default to the Ray actors; tests pass fakes."""
        self._status_now = status_now
        self._on_change = on_change
        self._connect: Connect = connect or (
            lambda sid, owner: stream_actor.get_or_create(sid, owner, settings)
        )
        self._stop = stop
        self._handles: dict[UUID, Handle] = {}
        self._lanes: dict[tuple[UUID, str], CallLane] = {}
        self._max_queued = settings.stream_max_pending_writes

    # -- the operations (see StreamSession) ---------------------------------
    async def start(self, stream: Stream) -> dict[str, Any]:
        """created → live."""
        row = await self._call(stream, lambda actor: actor.start.remote())
        self._on_change(stream["id"])
        return row

    async def end(self, stream: Stream, reason: str = "ended_by_owner") -> dict[str, Any]:
        """live → ended; then the stream's actor is stopped for good."""
        row = await self._call(stream, lambda actor: actor.end.remote(reason))
        self.forget(stream["id"])
        return row

    async def join(self, stream: Stream, user: UUID) -> dict[str, Any]:
        return await self._call(stream, lambda actor: actor.join.remote(user))

    async def leave(self, stream: Stream, user: UUID) -> dict[str, Any]:
        return await self._call(stream, lambda actor: actor.leave.remote(user))

    async def chat(
        self, stream: Stream, user: UUID, message: str, score: float, moderated: bool
    ) -> dict[str, Any]:
        row: dict[str, Any] = await self._lane(stream, "chat_many").call(
            (user, message, score, moderated)
        )
        return row

    async def react(self, stream: Stream, user: UUID, reaction: str) -> dict[str, Any]:
        row: dict[str, Any] = await self._lane(stream, "react_many").call((user, reaction))
        return row

    async def stats(self, stream: Stream) -> dict[str, Any]:
        return await self._call(stream, lambda actor: actor.stats.remote())

    # -- handles --------------------------------------------------------------
    def forget(self, stream_id: UUID) -> None:
        """Stop an ended stream's actor and drop what is cached of it."""
        handle = self._handles.pop(stream_id, None)
        if handle is not None:
            self._stop(handle)
        for kind in ("chat_many", "react_many"):
            self._lanes.pop((stream_id, kind), None)
        self._on_change(stream_id)

    def _lane(self, stream: Stream, method: str) -> CallLane:
        """The stream's lane for `method` (`chat_many` or `react_many`)."""
        key = (stream["id"], method)
        lane = self._lanes.get(key)
        if lane is None:
            lane = CallLane(
                lambda items: self._batch(stream, method, items), max_queued=self._max_queued
            )
            self._lanes[key] = lane
        return lane

    async def _batch(self, stream: Stream, method: str, items: list[Any]) -> list[Any]:
        """One `method` call for `items`; what refused an item stays in its place."""
        results = cast(
            list[Any], await self._call(stream, lambda actor: getattr(actor, method).remote(items))
        )
        if any(isinstance(r, LumaError) and r.code == "stream_not_live" for r in results):
            self.forget(stream["id"])  # we reached an actor of an ended stream
        return results

    def _handle(self, stream: Stream) -> Handle:
        sid = stream["id"]
        if sid not in self._handles:
            self._handles[sid] = self._connect(sid, stream["user_id"])
        return self._handles[sid]

    async def _call(self, stream: Stream, op: _Op) -> dict[str, Any]:
        """Run `op` on the stream's actor; what it raises becomes a domain error."""
        sid = stream["id"]
        handle = self._handle(stream)
        try:
            return await op(handle)
        except RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, LumaError) else None
            if cause is None:
                raise
            if cause.code == "stream_not_live":  # we reached an actor of an ended stream
                self.forget(sid)
            raise cause from None
        except (ActorDiedError, ActorUnavailableError):
            self._handles.pop(sid, None)
            self._on_change(sid)
            status = await self._status_now(sid, stream["user_id"])
            if status != StreamStatus.LIVE:  # ended by another replica, which stopped the actor
                raise Conflict(f"stream is {status}, not live", "stream_not_live") from None
            raise Unavailable(
                "the stream's actor is restarting; retry", "stream_restarting"
            ) from None
