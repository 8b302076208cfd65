"""Live events of a stream: Server-Sent Events and a WebSocket (delivery in `serve_app.fanout`).

Both follow the stream's privacy: a caller who may not see the stream gets 404
(SSE) or close code 4404 (WebSocket), exactly as for GET of the stream. Clients
that cannot send headers pass `?access_token=`.

The first message on every connection is a `viewer_count`; once it has arrived
the subscription is live. Resuming: SSE sends `Last-Event-ID` (browsers do it
by themselves) or `?last_event_id=`; the WebSocket takes `?last_event_id=`.
The server then replays, from the table, exactly the events after that id.

Each open connection is an ongoing request of its Serve replica, which accepts
at most `max_ongoing_requests`; a replica therefore holds at most
`realtime_capacity(settings)` subscriptions and answers 503 beyond that, so
plain API calls always find room. One client holds at most
`max_realtime_per_user` of them per replica (anonymous callers:
`max_realtime_per_ip` per IP address); past that it gets 429
`too_many_connections` with Retry-After (WebSocket: close code 4429).

The WebSocket also carries chat from the client (`serve_app.socket_chat`): a
`{"type": "chat", "message", "ref"}` frame is sent as `POST …/chat` would be and
answered with a `chat_ack` or an `error` frame. Replies and events share the
socket under one lock, so frames never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response, StreamingResponse
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from lumalive.db import Database
from lumalive.errors import BadRequest, LumaError, Unavailable
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from lumalive.store import activity
from serve_app.callers import client_address
from serve_app.deps import (
    AccessDep,
    CallersDep,
    ConnectionsDep,
    DbDep,
    EventsDep,
    GatewayDep,
    MaybeUser,
    ModeratorDep,
    SettingsDep,
    maybe_user,
)
from serve_app.fanout import EventHub
from serve_app.routes.interaction import post_chat
from serve_app.socket_chat import SocketChat

__all__ = ["router", "realtime_capacity"]

router = APIRouter(prefix="/api/live-streaming/{stream_id}", tags=["realtime"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_RETRY_MS = 2000


def realtime_capacity(settings: Settings) -> int:
    """Subscriptions one replica holds: its ongoing-request limit less a tenth
    (at least 10) kept for ordinary requests."""
    return settings.max_ongoing_requests - max(10, settings.max_ongoing_requests // 10)


def _check_capacity(events: EventHub, settings: Settings) -> None:
    if events.subscribers >= realtime_capacity(settings):
        raise Unavailable(
            "this replica holds as many live connections as it may; retry", "too_many_subscribers"
        )


# One server-sent event as a client's SSE parser yields it.
_SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string", "description": "the event's `id`; send it as Last-Event-ID"},
        "event": {"type": "string", "description": "the event's `type`"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "retry": {"type": "integer"},
    },
}


class EventStreamResponse(StreamingResponse):
    """`text/event-stream`, ending quietly when the client goes away.

    Under Serve, `receive()` may raise (the proxy cancels the request) instead
    of returning `http.disconnect`; for a stream that means the same thing."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        status_code: int = 200,  # FastAPI reads the default for the OpenAPI document
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(content, status_code, headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._on_close is not None:
                self._on_close()  # the connection no longer counts against its client

    async def listen_for_disconnect(self, receive: Receive) -> None:
        with contextlib.suppress(Exception):
            await super().listen_for_disconnect(receive)


def _ip(conn: HTTPConnection, settings: Settings) -> str | None:
    return client_address(conn, settings.trusted_proxies)  # X-Forwarded-For of trusted proxies


def _resume_point(header: str | None, query: int | None) -> int | None:
    if header is None or header == "":
        return query
    try:
        value = int(header)
    except ValueError:
        raise BadRequest(
            "Last-Event-ID must be an event id (an integer)", "invalid_cursor"
        ) from None
    if value < 0:
        raise BadRequest("Last-Event-ID must not be negative", "invalid_cursor")
    return value


async def _missed_any(db: Database, user: UUID | None, stream_id: UUID, after: int | None) -> bool:
    """Whether a client resuming after `after` has events to catch up on."""
    if after is None:
        return False
    async with db.acting(user) as conn:
        return await activity.has_events_after(conn, stream_id, after)


@router.get(
    "/events/stream",
    response_class=EventStreamResponse,
    responses={
        200: {
            "description": "Server-sent events; each event's `data` is one `Event` as JSON",
            # OpenAPI 3.1 (as schemathesis reads it): the schema describes one event.
            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
        },
        204: {"description": "the stream has ended and nothing is left to send"},
    },
)
async def event_stream(
    stream_id: UUID,
    request: Request,
    user: MaybeUser,
    access: AccessDep,
    events: EventsDep,
    connections: ConnectionsDep,
    db: DbDep,
    settings: SettingsDep,
    last_event_id: Annotated[
        int | None, Query(ge=0, description="resume after this event id")
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """Server-Sent Events: `event:` is the type, `id:` the event's seq, `data:` JSON in
    the event contract, `{"id", "type", "streamId", "createdAt", "data"}`, `data` with
    camelCase keys (`userId` with `username`, `message`, `reaction`, `viewerCount`, ...).

    Reactions arrive as `reaction` events while the stream is quiet (the first 4 of
    each 250 ms) and beyond that summed in `reaction_batch` events,
    `{"counts": {reaction: n}, "total", "firstSeq", "lastSeq"}`, whose `id` is the last
    seq covered. `viewer_count` (`{"viewerCount": n}`) has no `id`: it is state.
    (Before 0.2 messages were `{"id", "type", "stream_id", "created_at", "data"}` with
    snake_case data, and every reaction came in a batch of `reactions`.)"""
    after = _resume_point(last_event_id_header, last_event_id)
    stream = await access.visible(user, stream_id, fresh=True)
    if stream["status"] == StreamStatus.ENDED and not await _missed_any(db, user, stream_id, after):
        return Response(status_code=204)  # tells EventSource not to reconnect
    _check_capacity(events, settings)
    closed = connections.open(user, _ip(request, settings))  # 429 past the client's cap

    async def frames() -> AsyncIterator[bytes]:
        sub = await events.subscribe(stream, user, after=after, transport="sse")
        try:
            prefix = f"retry: {_RETRY_MS}\n\n".encode()
            async for batch in sub.batches():
                body = b"".join(m.sse for m in batch) if batch else b": keepalive\n\n"
                yield prefix + body
                prefix = b""
        finally:
            sub.close()

    return EventStreamResponse(frames(), headers=SSE_HEADERS, on_close=closed)


@router.websocket("/ws")
async def event_socket(
    ws: WebSocket,
    stream_id: UUID,
    callers: CallersDep,
    access: AccessDep,
    events: EventsDep,
    connections: ConnectionsDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    moderator: ModeratorDep,
    last_event_id: Annotated[int | None, Query(ge=0)] = None,
) -> None:
    """WebSocket: one JSON text message per event, in the event contract as the SSE
    `data:` (see `event_stream`). The client may send chat on it:
    `{"type": "chat", "message", "ref"}`, answered `{"type": "chat_ack", "ref", "chat"}`
    (the POST's body) or `{"type": "error", "ref", "error": {code, message, status}}`.
    Closes with 4401 (bad token), 4404 (not visible), 4429 (the client holds too many
    connections), 4503 (replica full), 1000 after stream_ended."""
    try:
        # The HTTP routes' own check, called here so that a bad token gets a close code.
        user = await maybe_user(ws, callers)
        stream = await access.visible(user, stream_id, fresh=True)
        _check_capacity(events, settings)
        closed = connections.open(user, _ip(ws, settings))
    except LumaError as exc:
        await ws.accept()
        await ws.send_json({"type": "error", "error": {"code": exc.code, "message": exc.message}})
        await ws.close(code=4000 + exc.status_code, reason=exc.code)
        return

    async def post(author: UUID, message: str) -> dict[str, Any]:
        return await post_chat(access, moderator, gateway, author, stream_id, message)

    chat = SocketChat(user, post, settings.max_body_bytes)
    try:
        await ws.accept()
        await _deliver(ws, events, stream, user, last_event_id, chat)
    finally:
        closed()


async def _deliver(
    ws: WebSocket,
    events: EventHub,
    stream: dict[str, Any],
    user: UUID | None,
    after: int | None,
    chat: SocketChat,
) -> None:
    """The accepted socket's life: events until the stream ends or the client leaves."""
    sub = await events.subscribe(stream, user, after=after, transport="ws")
    lock = asyncio.Lock()  # events and chat replies: one frame at a time
    reader = asyncio.create_task(_read_client(ws, chat, lock))
    reader.add_done_callback(lambda _: sub.keepalive())  # the client left: stop waiting
    try:
        async for batch in sub.batches():
            if reader.done():
                return
            if not batch:
                continue
            async with lock:
                for msg in batch:
                    await ws.send_text(msg.ws)
        # 4503: fell too far behind; reconnect with last_event_id to replay.
        code = 4503 if sub.overflowed else 1000
        await ws.close(code=code)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away mid-send
    finally:
        sub.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


# Chat frames of one socket being handled at once; past it a frame is refused (429).
_MAX_PENDING_CHAT = 16


async def _read_client(ws: WebSocket, chat: SocketChat, lock: asyncio.Lock) -> None:
    """Read what the client sends: chat frames are handled (each in a task of its own,
    so reading goes on), the rest ignored; returns when the client goes away."""
    pending: set[asyncio.Task[None]] = set()
    try:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                text = msg.get("text")
                if text is None:
                    continue
                if len(pending) >= _MAX_PENDING_CHAT:
                    await _reply(ws, lock, _too_many_pending())
                    continue
                task = asyncio.create_task(_answer(ws, chat, lock, text))
                pending.add(task)
                task.add_done_callback(pending.discard)
    finally:
        for task in pending:
            task.cancel()


async def _answer(ws: WebSocket, chat: SocketChat, lock: asyncio.Lock, text: str) -> None:
    reply = await chat.handle(text)
    if reply is not None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await _reply(ws, lock, reply)


async def _reply(ws: WebSocket, lock: asyncio.Lock, reply: dict[str, Any]) -> None:
    async with lock:
        await ws.send_text(json.dumps(reply, separators=(",", ":")))


def _too_many_pending() -> dict[str, Any]:
    return {
        "type": "error",
        "ref": None,
        "error": {
            "code": "rate_limited",
            "message": f"at most {_MAX_PENDING_CHAT} chat messages may await their ack",
            "status": 429,
            "retryAfter": 1,
        },
    }
