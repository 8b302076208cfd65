"""Trust and safety: stream moderators, bans and timeouts, the report queue, the audit
log, and a user's own settings (NSFW opt-in).

Each route checks the caller's role first, for a clear 403; Postgres checks it again
(sql/0006), so a route that forgot could not do more than the caller may.

    POST   /api/live-streaming/{id}/moderators          owner
    DELETE /api/live-streaming/{id}/moderators/{user}   owner
    GET    /api/live-streaming/{id}/moderators          whoever sees the stream
    POST   /api/live-streaming/{id}/bans                owner, stream moderators
    DELETE /api/live-streaming/{id}/bans/{user}         owner, stream moderators
    GET    /api/live-streaming/{id}/bans                owner, stream and platform moderators
    GET    /api/moderation/reports?status=open          platform moderators
    POST   /api/moderation/reports/{id}/resolve         platform moderators
    GET    /api/moderation/audit                        platform moderators (all);
                                                        owners (their streams' rows)
    GET    /api/me/settings, PUT /api/me/settings       the caller
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from actors import ingest_actor, whip_gateway
from lumalive.errors import Conflict, Forbidden, LumaError, NotFound, Unprocessable
from lumalive.status import StreamStatus
from lumalive.store import activity, moderation, settings_store, users
from serve_app.deps import AccessDep, CurrentUser, DbDep, GatewayDep, Limit, MaybeUser
from serve_app.schemas import storable

__all__ = ["router", "ModeratorIn", "BanIn", "ResolveIn", "SettingsIn"]

log = logging.getLogger(__name__)
router = APIRouter(tags=["moderation"])
_STREAM = "/api/live-streaming/{stream_id}"
T = TypeVar("T")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _storable(cls, v: T) -> T:
        return storable(v)


class ModeratorIn(_Body):
    userId: UUID


class BanIn(_Body):
    userId: UUID
    minutes: int | None = Field(None, ge=1, le=525_600, description="a timeout; none: a ban")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


class ResolveIn(_Body):
    action: Literal["dismiss", "warn", "end_stream", "suspend"]
    note: Annotated[str, StringConstraints(max_length=2000)] = ""


class SettingsIn(_Body):
    showNSFW: bool


# -- stream moderators ---------------------------------------------------------------


@router.post(f"{_STREAM}/moderators", status_code=201)
async def appoint_moderator(
    stream_id: UUID, body: ModeratorIn, user: CurrentUser, access: AccessDep, db: DbDep
) -> dict[str, Any]:
    """The owner appoints a moderator of their stream."""
    await access.owned(user, stream_id)
    if body.userId == user:
        raise Unprocessable("you already moderate your own stream", "invalid_moderator")
    async with db.acting(user) as conn:
        if not await users.user_exists(conn, body.userId):
            raise NotFound("user not found", "user_not_found")
        new = await moderation.appoint(conn, stream_id, user, body.userId)
    return {"stream_id": stream_id, "user_id": body.userId, "moderator": True, "new": new}


@router.delete(f"{_STREAM}/moderators/{{user_id}}")
async def remove_moderator(
    stream_id: UUID, user_id: UUID, user: CurrentUser, access: AccessDep, db: DbDep
) -> dict[str, Any]:
    await access.owned(user, stream_id)
    async with db.acting(user) as conn:
        if not await moderation.remove_moderator(conn, stream_id, user_id):
            raise NotFound("that user is not a moderator of this stream", "not_a_moderator")
    return {"stream_id": stream_id, "user_id": user_id, "moderator": False}


@router.get(f"{_STREAM}/moderators")
async def list_moderators(
    stream_id: UUID, user: MaybeUser, access: AccessDep, db: DbDep
) -> dict[str, Any]:
    """A stream's moderators, for whoever may see the stream (badges in chat)."""
    await access.visible(user, stream_id, fresh=True)
    async with db.acting(user) as conn:
        return {"items": await moderation.list_moderators(conn, stream_id)}


# -- bans and timeouts -------------------------------------------------------------


async def _moderating(access: AccessDep, db: DbDep, user: UUID, stream_id: UUID) -> dict[str, Any]:
    """The stream; Forbidden unless the caller owns or moderates it."""
    stream = await access.visible(user, stream_id, fresh=True)
    async with db.acting(user) as conn:
        if not await moderation.may_moderate(conn, stream_id):
            raise Forbidden(
                "only the stream's owner and moderators may do this", "not_stream_moderator"
            )
    return stream


@router.post(f"{_STREAM}/bans", status_code=201)
async def ban_user(
    stream_id: UUID,
    body: BanIn,
    user: CurrentUser,
    access: AccessDep,
    gateway: GatewayDep,
    db: DbDep,
) -> dict[str, Any]:
    """Ban a user from the stream (no `minutes`), or time them out of its chat. A ban
    ends the user's open SSE and WebSocket connections to it and their viewing."""
    stream = await _moderating(access, db, user, stream_id)
    if body.userId == user:
        raise Unprocessable("you cannot ban yourself", "invalid_ban")
    async with db.acting(user) as conn:
        if not await users.user_exists(conn, body.userId):
            raise NotFound("user not found", "user_not_found")
        if not await moderation.may_ban(conn, stream_id, body.userId):
            raise Forbidden(
                "the owner cannot be banned, and a moderator only by the owner",
                "ban_not_allowed",
            )
        row = await moderation.ban(conn, stream_id, user, body.userId, body.minutes, body.reason)
        if body.minutes is None:  # the fan-out ends their connections on this event
            await activity.add_event(
                conn, stream_id, "user_banned", {"user_id": body.userId, "by": user}
            )
    access.invalidate(stream_id)
    if body.minutes is None and stream["status"] == StreamStatus.LIVE:
        await _close_viewing(gateway, stream, body.userId)
    return {**row, "kind": "ban" if body.minutes is None else "timeout"}


async def _close_viewing(gateway: GatewayDep, stream: dict[str, Any], user_id: UUID) -> None:
    """End a banned user's viewing, if any (the stream's actor writes it as them), and
    their WebRTC playbacks (the ingest serves those: `actors.whep_egress`)."""
    try:
        await gateway.leave(stream, user_id)
    except LumaError as e:  # e.g. the stream ended meanwhile: nothing to close
        log.info("stream %s: closing a banned viewer's viewing: %s", stream["id"], e)
    try:
        await whip_gateway.ban(stream["id"], user_id)
    except Exception as e:  # noqa: BLE001 - the ban is committed: report it, log this
        log.warning("stream %s: ending a banned viewer's WHEP playbacks: %r", stream["id"], e)


@router.delete(f"{_STREAM}/bans/{{user_id}}")
async def lift_ban(
    stream_id: UUID, user_id: UUID, user: CurrentUser, access: AccessDep, db: DbDep
) -> dict[str, Any]:
    await _moderating(access, db, user, stream_id)
    async with db.acting(user) as conn:
        if not await moderation.lift(conn, stream_id, user_id):
            raise NotFound("no ban of that user on this stream to lift", "ban_not_found")
    access.invalidate(stream_id)
    return {"stream_id": stream_id, "user_id": user_id, "lifted": True}


@router.get(f"{_STREAM}/bans")
async def list_bans(
    stream_id: UUID, user: CurrentUser, access: AccessDep, db: DbDep
) -> dict[str, Any]:
    """Bans and timeouts in force: for the owner, stream and platform moderators."""
    await access.visible(user, stream_id, fresh=True)
    async with db.acting(user) as conn:
        if not (
            await moderation.may_moderate(conn, stream_id)
            or await moderation.is_platform_moderator(conn)
        ):
            raise Forbidden(
                "only the stream's owner and moderators may do this", "not_stream_moderator"
            )
        return {"items": await moderation.list_bans(conn, stream_id)}


# -- platform moderators: the report queue ---------------------------------------------


async def _platform_moderator(db: DbDep, user: UUID) -> None:
    async with db.acting(user) as conn:
        if not await moderation.is_platform_moderator(conn):
            raise Forbidden("platform moderators only", "not_platform_moderator")


@router.get("/api/moderation/reports")
async def report_queue(
    user: CurrentUser,
    db: DbDep,
    status: Literal["open", "resolved", "all"] = "open",
    limit: Limit = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Reports newest first, with the stream, the reporter, the reason and details, and
    what moderation already found (flagged segments, hidden messages)."""
    await _platform_moderator(db, user)
    async with db.acting(user) as conn:
        items, nxt = await moderation.report_queue(
            conn, None if status == "all" else status, limit=limit, after=cursor
        )
    return {"items": items, "next_cursor": nxt}


@router.post("/api/moderation/reports/{report_id}/resolve")
async def resolve_report(
    report_id: UUID,
    body: ResolveIn,
    user: CurrentUser,
    db: DbDep,
    access: AccessDep,
    gateway: GatewayDep,
) -> dict[str, Any]:
    """Resolve an open report: dismiss, warn, end the stream (`policy_violation`: its
    VOD is withheld from viewers) or suspend its broadcaster (and end the stream)."""
    await _platform_moderator(db, user)
    status = None
    async with db.acting(user) as conn:
        done = await moderation.resolve_report(conn, report_id, body.action, body.note)
        if done is None:
            status = await moderation.report_status(conn, report_id)
    if done is None:
        if status is None:
            raise NotFound("report not found", "report_not_found")
        raise Conflict("the report is already resolved", "report_resolved")
    if body.action in ("end_stream", "suspend"):
        access.invalidate(done["stream_id"])
        if done["status_before"] == StreamStatus.LIVE:
            await _stop_live(gateway, done["stream_id"], done["owner_id"])
    return {"id": report_id, "status": "resolved", "resolution": body.action, **done}


async def _stop_live(gateway: GatewayDep, stream_id: UUID, owner_id: UUID) -> None:
    """Postgres has ended the stream; cut its publisher off and stop its actor (which
    answers `stream_not_live` and is forgotten, `StreamGateway._call`)."""
    await ingest_actor.finish(stream_id, 0.0)
    try:
        await gateway.end({"id": stream_id, "user_id": owner_id}, "policy_violation")
    except LumaError as e:
        if e.code != "stream_not_live":
            raise


@router.get("/api/moderation/audit")
async def audit_log(
    user: CurrentUser,
    db: DbDep,
    stream_id: UUID | None = None,
    limit: Limit = 50,
    before: Annotated[int | None, Query(ge=1, description="id cursor")] = None,
) -> dict[str, Any]:
    """Moderation actions newest first: every row for platform moderators, the rows
    about their own streams for owners, nothing for anyone else."""
    async with db.acting(user) as conn:
        items = await moderation.audit_log(conn, stream_id=stream_id, limit=limit, before=before)
    return {"items": items, "next_cursor": items[-1]["id"] if len(items) == limit else None}


# -- the caller's own settings -----------------------------------------------------


@router.get("/api/me/settings")
async def my_settings(user: CurrentUser, db: DbDep) -> dict[str, Any]:
    async with db.acting(user) as conn:
        return await settings_store.get(conn)


@router.put("/api/me/settings")
async def put_settings(body: SettingsIn, user: CurrentUser, db: DbDep) -> dict[str, Any]:
    """`{"showNSFW": true}` (confirmed once) lists NSFW streams and lets the caller join them."""
    async with db.acting(user) as conn:
        return await settings_store.put(conn, body.showNSFW)
