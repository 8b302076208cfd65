"""Admission control at the door of an API process: a bounded number of plain HTTP
requests in progress (`LUMALIVE_API_MAX_INFLIGHT` per replica); past it a request is
answered at once with 503 `overloaded` and Retry-After, instead of queueing work
whose client will have given up by the time it is done (issue 12: offered 3x its
capacity, the API keeps carrying its capacity at a low p99 and sheds the rest).

Not counted: WebSockets and SSE streams (long-lived; their own caps are in
`serve_app.limits` and `routes/realtime.py`), and `/healthz`, which must answer while
the replica is busy. A plain ASGI middleware, like `serve_app.latency`: nothing is
wrapped per request beyond a counter.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["Admission", "OVERLOAD_RETRY_S"]

# A refused request is told to come back after this many seconds.
OVERLOAD_RETRY_S = 1
_BODY = json.dumps(
    {
        "error": {
            "code": "overloaded",
            "message": "the API is at capacity; retry after the Retry-After seconds",
        }
    }
).encode()
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
    (b"retry-after", str(OVERLOAD_RETRY_S).encode()),
]


def _exempt(path: str) -> bool:
    return path.endswith("/events/stream") or path == "/healthz"


class Admission:
    """At most `max_inflight` counted requests in progress; 0 means no cap."""

    def __init__(self, app: ASGIApp, max_inflight: int) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.inflight = 0
        self.shed = 0  # requests refused so far (operators, tests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.max_inflight or _exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            self.shed += 1
            await send({"type": "http.response.start", "status": 503, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": _BODY})
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
