"""Stream management: create, start, end, read, list, delete."""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response

from actors import ingest_actor
from lumalive.errors import Conflict, NotFound, Unprocessable
from lumalive.quotas import check_create, check_start
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from lumalive.store import retention, streams
from media.ladder import QUALITY_BITRATE_KBPS
from serve_app.deps import (
    AccessDep,
    CurrentUser,
    DbDep,
    EmbeddingsDep,
    GatewayDep,
    Limit,
    MaybeUser,
    MediaStorageDep,
    SettingsDep,
    rate_limited,
)
from serve_app.renditions import planned, with_renditions
from serve_app.responses import ERRORS, OwnedStream, Stream, StreamPage
from serve_app.schemas import Storable, StreamConfig

router = APIRouter(prefix="/api/live-streaming", tags=["streams"], responses=ERRORS)


def _ai_features(cfg: StreamConfig) -> dict[str, Any]:
    return {
        "enhancement": cfg.enableAI,
        "hdr": cfg.enableHDR,
        "ray_tracing": cfg.enableRayTracing,
        **cfg.aiFeatures,
    }


def _with_key(settings: Settings, stream: dict[str, Any], key: str | None) -> dict[str, Any]:
    ingest = {
        "server": settings.rtmp_url,
        "stream_key": key,
        "url": f"{settings.rtmp_url}/{key}",
    }
    return {**stream, "stream_key": key, "ingest": ingest}


@router.post(
    "/create", status_code=201, response_model=OwnedStream, dependencies=[rate_limited("create")]
)
async def create_stream(
    cfg: StreamConfig,
    user: CurrentUser,
    db: DbDep,
    embeddings: EmbeddingsDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Create a stream; the response is the only one besides GET by its owner with the key.
    429 `too_many_streams_created` past `max_streams_created_per_hour`."""
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
        latency_mode=cfg.latencyMode,
    )
    async with db.acting(user) as conn:
        await check_create(conn, user, settings)
        row = await streams.insert(conn, new)
    embeddings.schedule(row)  # for recommendations; off the request's path
    return _with_key(settings, {**row, "renditions": planned(row, settings)}, key)


@router.post("/start/{stream_id}", response_model=Stream, dependencies=[rate_limited("start")])
async def start_stream(
    stream_id: UUID,
    user: CurrentUser,
    access: AccessDep,
    gateway: GatewayDep,
    db: DbDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """created → live; 429 `too_many_live_streams` at `max_live_streams_per_user`."""
    stream = await access.owned(user, stream_id)
    if stream["status"] != StreamStatus.CREATED:
        raise Conflict(
            f"stream is {stream['status']}; only a created stream can start", "invalid_transition"
        )
    async with db.acting(user) as conn:
        await check_start(conn, user, settings)  # the user's lock is held until it is live
        row = await gateway.start(stream)
    return await _one_with_renditions(db, user, row, settings)


@router.post("/end/{stream_id}", response_model=Stream)
async def end_stream(
    stream_id: UUID,
    user: CurrentUser,
    access: AccessDep,
    gateway: GatewayDep,
    settings: SettingsDep,
    db: DbDep,
) -> dict[str, Any]:
    """live → ended, once what the publisher sent is published (the VOD has every frame):
    the answer waits for that, at most `end_drain_s`."""
    stream = await access.owned(user, stream_id)
    if stream["status"] != StreamStatus.LIVE:
        raise Conflict(f"stream is {stream['status']}, not live", "stream_not_live")
    await ingest_actor.finish(stream_id, settings.end_drain_s)
    row = await gateway.end(stream, "ended_by_owner")  # also stops the stream's actor
    return await _one_with_renditions(db, user, row, settings)


@router.get("/live", response_model=StreamPage)
async def live_streams(
    user: MaybeUser,
    db: DbDep,
    settings: SettingsDep,
    limit: Limit = 20,
    cursor: str | None = None,
    category: Annotated[str | None, Query(max_length=50), Storable] = None,
    quality: str | None = Query(None, pattern="^(1080p|4K|8K|20K)$"),
    tag: Annotated[str | None, Query(max_length=50), Storable] = None,
) -> dict[str, Any]:
    """Live streams the caller may see, newest first."""
    async with db.acting(user) as conn:
        items, nxt = await streams.list_live(
            conn, limit=limit, after=cursor, category=category, quality=quality, tag=tag
        )
        items = await with_renditions(conn, items, settings)
    return {"items": items, "next_cursor": nxt}


@router.get("/user/{user_id}", response_model=StreamPage)
async def user_streams(
    user_id: UUID,
    user: MaybeUser,
    db: DbDep,
    settings: SettingsDep,
    limit: Limit = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    async with db.acting(user) as conn:
        items, nxt = await streams.list_by_user(conn, user_id, limit=limit, after=cursor)
        items = await with_renditions(conn, items, settings)
    return {"items": items, "next_cursor": nxt}


# Only the owner gets `stream_key` and `ingest`: left out, not null, for others.
@router.get("/{stream_id}", response_model=OwnedStream, response_model_exclude_unset=True)
async def get_stream(
    stream_id: UUID, user: MaybeUser, access: AccessDep, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    """The stream; its owner also gets the stream key and ingest URL."""
    stream = await access.visible(user, stream_id, fresh=True)
    stream = await _one_with_renditions(db, user, stream, settings)
    if user is not None and stream["user_id"] == user:
        async with db.acting(user) as conn:
            key = await streams.owner_key(conn, stream_id)
        return _with_key(settings, stream, key)
    return stream


async def _one_with_renditions(
    db: Any, user: UUID | None, stream: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    """The stream with its `renditions` (the plan, or the ladder once encoded)."""
    async with db.acting(user) as conn:
        [row] = await with_renditions(conn, [stream], settings)
    return row


@router.delete("/{stream_id}", status_code=204, response_class=Response)
async def delete_stream(
    stream_id: UUID, user: CurrentUser, db: DbDep, storage: MediaStorageDep
) -> Response:
    """Delete your stream and all it holds: its rows (chat, events, VOD...), then its
    media. 409 `stream_is_live` while live (end it first); 404 if it is not yours."""
    async with db.acting(user) as conn:
        outcome = await retention.delete_stream(conn, stream_id)
    if outcome is None:
        raise NotFound("stream not found", "stream_not_found")
    if outcome == StreamStatus.LIVE:
        raise Conflict("the stream is live; end it first", "stream_is_live")
    # The rows are gone (committed): no playlist names these objects any more.
    await asyncio.to_thread(storage.delete_prefix, retention.stream_prefix(stream_id))
    return Response(status_code=204)
