"""Stream management: create, start, end, read, list."""

from __future__ import annotations

import secrets
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query

from lumalive.errors import Conflict, Unprocessable
from lumalive.status import StreamStatus
from lumalive.store import streams
from media.ladder import QUALITY_BITRATE_KBPS
from serve_app.deps import Limit, MaybeUser, ServicesDep, User
from serve_app.schemas import StreamConfig

router = APIRouter(prefix="/api/live-streaming", tags=["streams"])


def _ai_features(cfg: StreamConfig) -> dict[str, Any]:
    return {
        "enhancement": cfg.enableAI,
        "hdr": cfg.enableHDR,
        "ray_tracing": cfg.enableRayTracing,
        **cfg.aiFeatures,
    }


def _with_key(services: ServicesDep, stream: dict[str, Any], key: str) -> dict[str, Any]:
    ingest = {
        "server": services.settings.rtmp_url,
        "stream_key": key,
        "url": f"{services.settings.rtmp_url}/{key}",
    }
    return {**stream, "stream_key": key, "ingest": ingest}


@router.post("/create", status_code=201)
async def create_stream(cfg: StreamConfig, user: User, services: ServicesDep) -> dict[str, Any]:
    """Create a stream; the response is the only one besides GET by its owner with the key."""
    tier_max = QUALITY_BITRATE_KBPS[cfg.quality]
    bitrate = cfg.bitrate or tier_max
    if bitrate > tier_max:
        raise Unprocessable(
            f"bitrate may not exceed {tier_max} kbps for {cfg.quality}", "bitrate_above_tier"
        )
    key = "live_" + secrets.token_urlsafe(24)
    new = streams.NewStream(
        user_id=user,
        title=cfg.title,
        description=cfg.description,
        quality=cfg.quality,
        bitrate=bitrate,
        privacy=cfg.privacy,
        category=cfg.category,
        tags=cfg.tags,
        is_nsfw=cfg.isNSFW,
        ai_features=_ai_features(cfg),
        stream_key=key,
    )
    async with services.db.acting(user) as conn:
        row = await streams.insert(conn, new)
    services.embeddings.schedule(row)  # for recommendations; off the request's path
    return _with_key(services, row, key)


@router.post("/start/{stream_id}")
async def start_stream(stream_id: UUID, user: User, services: ServicesDep) -> dict[str, Any]:
    stream = await services.owned_stream(user, stream_id)
    if stream["status"] != StreamStatus.CREATED:
        raise Conflict(
            f"stream is {stream['status']}; only a created stream can start", "invalid_transition"
        )
    row = await services.call(stream, "start")
    services.invalidate(stream_id)
    return row


@router.post("/end/{stream_id}")
async def end_stream(stream_id: UUID, user: User, services: ServicesDep) -> dict[str, Any]:
    stream = await services.owned_stream(user, stream_id)
    if stream["status"] != StreamStatus.LIVE:
        raise Conflict(f"stream is {stream['status']}, not live", "stream_not_live")
    row = await services.call(stream, "end", "ended_by_owner")
    services.forget(stream_id)
    return row


@router.get("/live")
async def live_streams(
    user: MaybeUser,
    services: ServicesDep,
    limit: Limit = 20,
    cursor: str | None = None,
    category: str | None = Query(None, max_length=50),
    quality: str | None = Query(None, pattern="^(1080p|4K|8K|20K)$"),
    tag: str | None = Query(None, max_length=50),
) -> dict[str, Any]:
    """Live streams the caller may see, newest first."""
    async with services.db.acting(user) as conn:
        items, nxt = await streams.list_live(
            conn, limit=limit, after=cursor, category=category, quality=quality, tag=tag
        )
    return {"items": items, "next_cursor": nxt}


@router.get("/user/{user_id}")
async def user_streams(
    user_id: UUID,
    user: MaybeUser,
    services: ServicesDep,
    limit: Limit = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    async with services.db.acting(user) as conn:
        items, nxt = await streams.list_by_user(conn, user_id, limit=limit, after=cursor)
    return {"items": items, "next_cursor": nxt}


@router.get("/{stream_id}")
async def get_stream(stream_id: UUID, user: MaybeUser, services: ServicesDep) -> dict[str, Any]:
    """The stream; its owner also gets the stream key and ingest URL."""
    stream = await services.visible_stream(user, stream_id, fresh=True)
    if user is not None and stream["user_id"] == user:
        async with services.db.acting(user) as conn:
            key = await streams.owner_key(conn, stream_id)
        return _with_key(services, stream, key)
    return stream
