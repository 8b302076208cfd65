"""The web app at `/`: the built files of `web/` (`make web`), and each stream's poster.

Invariants:
- The app never shadows the API: paths under `/api`, the docs, `/openapi.json`,
  `/healthz` and `/metrics` are not matched by its route at all (`AppRoute.matches`),
  so an unknown API path is still the API's JSON 404 and a wrong method its 405.
- Any other GET is a file of the build if one has that name, else `index.html`: the
  app routes itself on the client (`/watch/<id>`, `/studio`, ...), so a reload or a
  shared link of any of its pages gets the page.
- No file outside the build directory is ever served (paths are resolved and checked).
- Without a build, `/` says how to make one (503), never a 500.
- The poster is read under the same visibility as HLS: who may not see the stream
  gets 404, like every other read about it.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, PlainTextResponse, Response
from pydantic import BaseModel
from starlette.routing import Match, Route
from starlette.types import Scope

from lumalive.errors import NotFound
from lumalive.status import StreamStatus
from lumalive.store import media
from media.poster import PosterError, poster_jpeg
from media.storage import SegmentStorage
from serve_app.deps import AccessDep, DbDep, MaybeUser, MediaStorageDep

__all__ = ["AppRoute", "default_dist", "install", "router"]

# First path segments that belong to the API, never to the app.
RESERVED = frozenset({"api", "docs", "redoc", "openapi.json", "healthz", "metrics"})
NOT_BUILT = (
    "The LumaLive web app is not built. Run `make web` (npm ci and npm run build in web/),\n"
    "or set LUMALIVE_WEB_DIST to a built copy. The API itself is up: see /docs.\n"
)

router = APIRouter(prefix="/api/live-streaming/{stream_id}", tags=["playback"])


def default_dist() -> Path:
    """`web/dist` beside the packages: absolute, since Serve replicas run elsewhere."""
    return Path(__file__).resolve().parents[1] / "web" / "dist"


@router.get(
    "/poster.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no media yet"}},
)
async def poster(
    stream_id: UUID, user: MaybeUser, access: AccessDep, db: DbDep, storage: MediaStorageDep
) -> Response:
    """A thumbnail of the stream: the first frame of its newest segment, 320 px wide.
    `?access_token=` works where `<img>` cannot send a header."""
    stream = await access.visible(user, stream_id)
    path = await _newest_segment(db, user, stream_id)
    try:
        jpeg = await asyncio.to_thread(_poster_of, storage, path)
    except (KeyError, PosterError):
        raise NotFound("no poster for this stream yet", "poster_not_ready") from None
    scope = "public" if stream["privacy"] == "public" else "private"
    ended = stream["status"] == StreamStatus.ENDED
    return Response(
        jpeg,
        media_type="image/jpeg",
        headers={"Cache-Control": f"{scope}, max-age={300 if ended else 2}"},
    )


class RenditionInfo(BaseModel):
    """One rung of a stream's ladder, for a player's quality menu."""

    name: str
    width: int
    height: int
    bandwidth: int
    aiEnhanced: bool  # camelCase, like the stream config the client sends


@router.get("/renditions")
async def renditions(
    stream_id: UUID, user: MaybeUser, access: AccessDep, db: DbDep
) -> list[RenditionInfo]:
    """The stream's ladder as the player's menu shows it, highest first; `aiEnhanced`
    marks rungs above the source, made by the super-resolution model. The master
    playlist cannot say that (HLS has no attribute for it)."""
    await access.visible(user, stream_id)
    async with db.acting(user) as conn:
        rows = await media.renditions(conn, stream_id)
    return [
        RenditionInfo(
            name=r["name"],
            width=r["width"],
            height=r["height"],
            bandwidth=r["bandwidth"],
            aiEnhanced=bool(r["needs_upscale"]),
        )
        for r in rows
    ]


async def _newest_segment(db: Any, user: UUID | None, stream_id: UUID) -> str:
    """The storage key of the newest segment of the smallest rendition."""
    async with db.acting(user) as conn:
        rows = await media.renditions(conn, stream_id)
        if not rows:
            raise NotFound("the stream has no media yet", "media_not_ready")
        smallest = min(rows, key=lambda r: int(r["height"]))["name"]
        newest = await media.playlist(conn, stream_id, smallest, 1)
        row = newest and await media.segment(conn, stream_id, smallest, newest[-1]["sequence"])
    if not row:
        raise NotFound("the stream has no media yet", "media_not_ready")
    return str(row["path"])


@functools.lru_cache(maxsize=256)
def _poster_of(storage: SegmentStorage, key: str) -> bytes:
    """Segments are immutable, so a poster is made once per segment and replica."""
    return poster_jpeg(storage.get(key))


class AppRoute(Route):
    """A GET route that serves the built app, and does not match API paths at all."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            first = scope["path"].lstrip("/").split("/", 1)[0]
            if first in RESERVED:
                return Match.NONE, {}
        return super().matches(scope)


class StaticApp:
    """The handler behind `AppRoute`: files of the build, else its index.html."""

    def __init__(self, dist: Path) -> None:
        self.dist = dist.resolve()

    async def page(self, request: Any) -> Response:
        index = self.dist / "index.html"
        if not index.is_file():
            return PlainTextResponse(NOT_BUILT, status_code=503)
        asked = request.path_params.get("path", "")
        target = (self.dist / asked).resolve()
        if asked and target.is_file() and target.is_relative_to(self.dist):
            # Vite puts content hashes in asset names: they never change.
            immutable = target.parent == self.dist / "assets"
            cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
            return FileResponse(target, headers={"Cache-Control": cache})
        if asked.startswith("assets/"):  # a stale page asking for an old build's file
            return PlainTextResponse("no such file", status_code=404)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})


def install(app: FastAPI, dist: Path | None) -> None:
    """Add the poster route and, last of all routes, the app's catch-all."""
    app.include_router(router)
    handler = StaticApp(dist or default_dist())
    app.router.routes.append(
        AppRoute("/{path:path}", handler.page, methods=["GET", "HEAD"], include_in_schema=False)
    )
