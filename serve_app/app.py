"""Builds the FastAPI app. Served by Ray Serve in production (`serve_app.deployment`)
and by plain uvicorn as the benchmark's baseline — the same app either way."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from lumalive.db import as_unavailable
from lumalive.settings import Settings
from serve_app import errors
from serve_app.admission import Admission
from serve_app.body_limit import BodyLimit
from serve_app.deps import DbDep
from serve_app.latency import LatencyMiddleware
from serve_app.replica import Replica
from serve_app.responses import ERRORS
from serve_app.routes import hls, interaction, overview, realtime, recommend, social, streams
from serve_app.routes import llhls as llhls_routes
from serve_app.routes import moderation as moderation_routes
from serve_app.routes import tiles as tiles_routes
from serve_app.routes import webhooks as webhook_routes
from serve_app.routes import whep_play as whep_routes
from serve_app.routes import whip as whip_routes
from serve_app.webapp import install as install_webapp

__all__ = ["create_app"]


def create_app(settings: Settings, replica: Replica | None = None) -> FastAPI:
    """The API. Without `replica`, each serving process builds its own on first use."""
    app = FastAPI(
        title="LumaLive API",
        version="0.1.0",
        description="Live streaming backend: streams, chat, reactions, viewers, analytics.",
        responses=ERRORS,  # the one error shape, documented for every route
    )
    app.state.settings = settings
    app.state.replica = replica
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Sheds past its in-flight bound with 503 `overloaded` (issue 12); inside the
    # latency middleware, so the sheds are timed too.
    app.add_middleware(
        Admission,
        max_inflight=settings.api_max_inflight,
        min_inflight=settings.api_admission_min,  # adapts to latency in between
    )
    app.add_middleware(LatencyMiddleware)  # outermost: times every request, 413s included
    app.include_router(recommend.router)  # before streams: /recommended is not a stream id
    app.include_router(hls.router)  # playback: /{id}/hls/...
    app.include_router(tiles_routes.router)  # 20K tile map and DASH MPD: /{id}/tiles/...
    app.include_router(llhls_routes.router)  # low-latency playback: /{id}/llhls/...
    app.include_router(streams.router)
    app.include_router(interaction.router)
    app.include_router(social.router)
    app.include_router(realtime.router)
    app.include_router(overview.router)
    app.include_router(webhook_routes.router)
    app.include_router(moderation_routes.router)
    app.include_router(whip_routes.router)
    app.include_router(whep_routes.router)  # WebRTC playback: /{id}/whep

    @app.get(
        "/healthz",
        tags=["ops"],
        response_model=None,
        responses={
            200: {"content": {"application/json": {"example": {"status": "ok"}}}},
            503: {"description": "not ready: `error.down` names what is down"},
        },
    )
    async def healthz(db: DbDep) -> dict[str, str] | JSONResponse:
        """Ready when the database answers (this also builds the replica's pieces)."""
        try:
            await db.ping()
        except Exception as exc:
            fault = as_unavailable(exc)
            if fault is None:
                raise
            return errors.unavailable_response(fault, down=["database"])
        return {"status": "ok"}

    install_webapp(app, settings.web_dist)  # last: its catch-all must follow every route
    return app
