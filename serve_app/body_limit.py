"""Request bodies of at most `max_bytes`, counted as they arrive.

`Content-Length` is only a claim, and a chunked body makes none: so besides
refusing a body that declares itself too large before reading a byte, the
middleware counts the bytes of every `http.request` message the app receives and
refuses the request (413 `payload_too_large`) on the message that crosses the
limit. The app therefore never holds more than `max_bytes` plus one message of a
body (the server's read size, typically 64 KiB), and whatever the client still
sends is never read into the app; the server discards it.

A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's
BaseHTTPMiddleware re-streams every response body through a memory channel (a task
switch per chunk of every SSE stream), and under Serve it logs a spurious error
when a streaming client disconnects.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app import errors

__all__ = ["BodyLimit", "BodyTooLarge"]


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body crosses the limit. An HTTPException, so
    FastAPI passes it through its body parsing (any other error there becomes a 400)
    and the app's one error handler answers it as 413 `payload_too_large`."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is limited to {max_bytes} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            # Reached here only where no handler answered it (a read outside FastAPI's
            # body parsing). Once a response has begun, ending it is all that is left.
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = errors.error_response(
            413, "payload_too_large", f"request body is limited to {self.max_bytes} bytes"
        )
        await response(scope, receive, send)
