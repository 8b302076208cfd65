"""API latency by route, as a Ray histogram (`lumalive.metrics.api_latency_ms`).

A plain ASGI middleware (not BaseHTTPMiddleware, which would wrap every
streamed body): it times each HTTP request to the start of its response, so a
long-lived SSE stream counts its time to first byte, not its lifetime. Routes
are labelled by template (`/api/live-streaming/{stream_id}/chat`), never by
raw path, to keep the label set small.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lumalive import metrics

__all__ = ["LatencyMiddleware"]


class LatencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            route: Any = scope.get("route")
            metrics.api_latency_ms().observe(
                (time.perf_counter() - start) * 1000,
                tags={
                    "route": getattr(route, "path", "unmatched"),
                    "method": scope["method"],
                    "status": str(status),
                },
            )

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception:
            record(500)
            raise
