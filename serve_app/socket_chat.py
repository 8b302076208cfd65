"""Chat over the viewer's event WebSocket (`/api/live-streaming/{id}/ws`), beside POST.

A viewer already holds the socket for the stream's events; sending chat on it saves
an HTTP request (and, under Serve, a trip through the proxy's router) per message.
The frame goes through exactly what `POST …/chat` does (`routes.interaction.post_chat`:
the caller may speak in the stream, moderation, the stream actor's rate limit and
admission), and its refusals are the POST's errors as JSON frames.

Client → server (text frame):
    {"type": "chat", "message": "hi", "ref": "c1"}        `ref`: optional, echoed
Server → client:
    {"type": "chat_ack", "ref": "c1", "chat": {…}}          `chat`: the POST's 201 body
    {"type": "error", "ref": "c1", "error": {"code", "message", "status", "retryAfter"?}}

Anything else the client sends is ignored (as before), except a frame over
`LUMALIVE_MAX_BODY_BYTES` (413 `payload_too_large`) and a `chat` frame that is not
valid (422 `validation_error`, as the POST). Anonymous callers get 401
`missing_token`. Acks may come out of order when several are pending; `ref` says
which is which. Events (the message's own `chat_message` included) keep coming on
the same socket in seq order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from lumalive.db import as_unavailable
from lumalive.errors import LumaError, PayloadTooLarge, RateLimited, Unauthorized, Unavailable
from serve_app.responses import SentChat
from serve_app.schemas import ChatIn

__all__ = ["SocketChat", "Post"]

log = logging.getLogger(__name__)

# (user, message) -> the POST's response body (`routes.interaction.post_chat`, bound).
Post = Callable[[UUID, str], Awaitable[dict[str, Any]]]


class SocketChat:
    """One socket's chat: turns a client frame into the reply frame (or None)."""

    def __init__(self, user: UUID | None, post: Post, max_bytes: int) -> None:
        self._user = user
        self._post = post
        self._max_bytes = max_bytes

    async def handle(self, text: str) -> dict[str, Any] | None:
        """The reply to one text frame; None for frames that are not chat."""
        if len(text) > self._max_bytes:
            return _error(None, PayloadTooLarge(f"a frame holds at most {self._max_bytes} bytes"))
        try:
            frame = json.loads(text)
        except ValueError:
            return None
        if not isinstance(frame, dict) or frame.get("type") != "chat":
            return None
        ref = frame.get("ref")
        ref = ref if isinstance(ref, str | int) and len(str(ref)) <= 64 else None
        try:
            return {"type": "chat_ack", "ref": ref, "chat": await self._chat(frame)}
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
            where = ".".join(str(p) for p in first.get("loc", ()))
            return _error(ref, None, 422, "validation_error", f"{where}: {first.get('msg')}")
        except LumaError as exc:
            return _error(ref, exc)
        except Exception as exc:
            fault = as_unavailable(exc)
            if fault is None:  # as the POST's 500: logged, not explained to the client
                log.exception("chat over the WebSocket failed")
                return _error(ref, None, 500, "internal_error", "the message was not sent")
            return _error(ref, fault)

    async def _chat(self, frame: dict[str, Any]) -> dict[str, Any]:
        if self._user is None:
            raise Unauthorized("sending chat needs a bearer token", "missing_token")
        body = ChatIn.model_validate({"message": frame.get("message")})
        row = await self._post(self._user, body.message)
        return SentChat.model_validate(row).model_dump(mode="json")


def _error(
    ref: str | int | None,
    exc: LumaError | None,
    status: int = 0,
    code: str = "",
    message: str = "",
) -> dict[str, Any]:
    """The POST's `{error: {code, message}}` as a frame, with its status and Retry-After."""
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if exc is not None:
        err = {"code": exc.code, "message": exc.message, "status": exc.status_code}
        retry = exc.retry_after if isinstance(exc, RateLimited | Unavailable) else None
        if retry is not None:
            err["retryAfter"] = max(1, round(retry + 0.499))
    return {"type": "error", "ref": ref, "error": err}
