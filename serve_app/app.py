"""Builds the FastAPI app. Served by Ray Serve in production (`serve_app.deployment`)
and by plain uvicorn as the benchmark's baseline — the same app either way."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from lumalive.settings import Settings
from serve_app import errors
from serve_app.deps import DbDep
from serve_app.latency import LatencyMiddleware
from serve_app.replica import Replica
from serve_app.routes import hls, interaction, overview, realtime, recommend, social, streams

__all__ = ["create_app"]


def create_app(settings: Settings, replica: Replica | None = None) -> FastAPI:
    """The API. Without `replica`, each serving process builds its own on first use."""
    app = FastAPI(
        title="LumaLive API",
        version="0.1.0",
        description="Live streaming backend: streams, chat, reactions, viewers, analytics.",
    )
    app.state.settings = settings
    app.state.replica = replica
    errors.install(app)
    _limit_body(app, settings.max_body_bytes)
    app.add_middleware(LatencyMiddleware)  # outermost: times every request, 413s included
    app.include_router(recommend.router)  # before streams: /recommended is not a stream id
    app.include_router(hls.router)  # playback: /{id}/hls/...
    app.include_router(streams.router)
    app.include_router(interaction.router)
    app.include_router(social.router)
    app.include_router(realtime.router)
    app.include_router(overview.router)

    @app.get("/healthz", tags=["ops"])
    async def healthz(db: DbDep) -> dict[str, str]:
        """Ready when the database answers (this also builds the replica's pieces)."""
        await db.ping()
        return {"status": "ok"}

    return app


def _limit_body(app: FastAPI, max_bytes: int) -> None:
    """413 before reading a body that declares itself too large."""
    app.add_middleware(_BodyLimit, max_bytes=max_bytes)


class _BodyLimit:
    """A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's
    BaseHTTPMiddleware re-streams every response body through a memory channel
    (a task switch per chunk of every SSE stream), and under Serve it logs a
    spurious error when a streaming client disconnects."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = Headers(scope=scope).get("content-length")
            if length and (not length.isdigit() or int(length) > self.max_bytes):
                response = errors.error_response(
                    413, "payload_too_large", f"request body is limited to {self.max_bytes} bytes"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
