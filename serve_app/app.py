"""Builds the FastAPI app. Served by Ray Serve in production (`serve_app.deployment`)
and by plain uvicorn as the benchmark's baseline — the same app either way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from sqlalchemy import text

from lumalive.settings import Settings
from serve_app.deps import ServicesDep
from serve_app import errors
from serve_app.routes import interaction, social, streams
from serve_app.services import Services

__all__ = ["create_app"]


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """The API. Without `services`, each serving process builds its own on first use."""
    app = FastAPI(title="LumaLive API", version="0.1.0",
                  description="Live streaming backend: streams, chat, reactions, viewers, analytics.")
    app.state.settings = settings
    app.state.services = services
    errors.install(app)
    _limit_body(app, settings.max_body_bytes)
    app.include_router(streams.router)
    app.include_router(interaction.router)
    app.include_router(social.router)

    @app.get("/healthz", tags=["ops"])
    async def healthz(services: ServicesDep) -> dict[str, str]:
        """Ready when the database answers (this also warms the replica's services)."""
        async with services.db.acting(None) as conn:
            await conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    return app


def _limit_body(app: FastAPI, max_bytes: int) -> None:
    """413 before reading a body that declares itself too large."""

    @app.middleware("http")
    async def limit(request: Request, call_next: Callable[[Request], Awaitable[Response]]):
        length = request.headers.get("content-length")
        if length and (not length.isdigit() or int(length) > max_bytes):
            return errors.error_response(413, "payload_too_large",
                                         f"request body is limited to {max_bytes} bytes")
        return await call_next(request)
