"""Inside a stream: join/leave, chat, reactions, events, analytics, invites, reports.

Writes that change live state go through the stream's actor; reads go to
Postgres under the caller's identity, so RLS filters them.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request

from actors.stream_gateway import StreamGateway
from lumalive.errors import Conflict, NotFound, Unprocessable
from lumalive.status import StreamStatus
from lumalive.store import activity, analytics, users
from models.moderation import ChatModerator
from serve_app.deps import (
    AccessDep,
    CurrentUser,
    DbDep,
    GatewayDep,
    Limit,
    MaybeUser,
    ModeratorDep,
    SettingsDep,
    TokensDep,
    rate_limited,
)
from serve_app.events import from_row
from serve_app.responses import (
    ERRORS,
    ChatMessage,
    ChatPage,
    EventPage,
    Invited,
    Joined,
    Left,
    Reaction,
    Report,
    SentChat,
    StreamAnalytics,
)
from serve_app.schemas import ChatIn, InviteIn, ReactionIn, ReportIn, Storable
from serve_app.stream_access import StreamAccess

router = APIRouter(prefix="/api/live-streaming/{stream_id}", tags=["interaction"], responses=ERRORS)


@router.post("/join", response_model=Joined, dependencies=[rate_limited("join")])
async def join(
    stream_id: UUID,
    user: CurrentUser,
    access: AccessDep,
    gateway: GatewayDep,
    tokens: TokensDep,
    settings: SettingsDep,
    request: Request,
) -> dict[str, Any]:
    """Join; `playback_url` is the HLS master playlist with a playback token for this user,
    `ll_playback_url` the LL-HLS one (null unless the stream's latency mode is low)."""
    stream = await access.live(user, stream_id)
    row = await gateway.join(stream, user)
    token = tokens.issue_playback(user, stream_id, settings.playback_ttl_s)
    url = request.url_for("hls_master", stream_id=stream_id)
    low = stream.get("latency_mode", "low") == "low" and settings.llhls_max_height > 0
    ll = request.url_for("llhls_master", stream_id=stream_id) if low else None
    return {
        **row,
        "playback_url": f"{url}?pt={token}",
        "ll_playback_url": f"{ll}?pt={token}" if ll else None,
    }


@router.post("/leave", response_model=Left, dependencies=[rate_limited("join")])
async def leave(
    stream_id: UUID, user: CurrentUser, access: AccessDep, gateway: GatewayDep
) -> dict[str, Any]:
    stream = await access.visible(user, stream_id)
    if stream["status"] != StreamStatus.LIVE:  # ending the stream already closed every viewing
        return {"left": False, "watch_duration": None, "viewers": 0}
    return await gateway.leave(stream, user)


@router.post("/chat", status_code=201, response_model=SentChat)
async def send_chat(
    stream_id: UUID,
    body: ChatIn,
    user: CurrentUser,
    access: AccessDep,
    gateway: GatewayDep,
    moderator: ModeratorDep,
) -> dict[str, Any]:
    return await post_chat(access, moderator, gateway, user, stream_id, body.message)


async def post_chat(
    access: StreamAccess,
    moderator: ChatModerator,
    gateway: StreamGateway,
    user: UUID,
    stream_id: UUID,
    message: str,
) -> dict[str, Any]:
    """Send a validated message as `user`: the POST route and the WebSocket's `chat`
    frame (`serve_app.socket_chat`) both come here, so both check and refuse alike."""
    stream = await access.speaking(user, stream_id)
    score, moderated = moderator.score(message)
    row = await gateway.chat(stream, user, message, score, moderated)
    return {**row, "moderation_score": round(score, 4)}


@router.get("/chat", response_model=ChatPage)
async def chat_history(
    stream_id: UUID,
    user: MaybeUser,
    access: AccessDep,
    db: DbDep,
    limit: Limit = 50,
    before: Annotated[int | None, Query(ge=1, description="seq cursor")] = None,
) -> dict[str, Any]:
    """Chat newest first; pass `next_cursor` as `before` for older messages."""
    await access.visible(user, stream_id, fresh=True)
    async with db.acting(user) as conn:
        items = await activity.list_chat(conn, stream_id, before=before, limit=limit)
    nxt = items[-1]["seq"] if len(items) == limit else None
    return {"items": items, "next_cursor": nxt}


@router.delete("/chat/{message_id}", response_model=ChatMessage)
async def delete_chat(
    stream_id: UUID, message_id: UUID, user: CurrentUser, access: AccessDep, db: DbDep
) -> dict[str, Any]:
    """The author or the stream's owner soft-deletes a message."""
    await access.visible(user, stream_id, fresh=True)
    async with db.acting(user) as conn:
        row = await activity.soft_delete_chat(conn, stream_id, message_id)
        if row is None:
            raise NotFound("message not found, or not yours to delete", "message_not_found")
        await activity.add_event(
            conn,
            stream_id,
            "moderation_action",
            {"action": "chat_message_deleted", "message_id": message_id, "by": user},
        )
    return row


@router.post("/reaction", status_code=201, response_model=Reaction)
async def react(
    stream_id: UUID, body: ReactionIn, user: CurrentUser, access: AccessDep, gateway: GatewayDep
) -> dict[str, Any]:
    stream = await access.speaking(user, stream_id)
    return await gateway.react(stream, user, body.reaction)


EVENTS_DOC = """Events oldest first after `since`; pass `next_cursor` as `since` to go on.

Each item follows the event contract, as SSE and WebSocket messages do:
`{"id": seq, "type", "streamId", "createdAt", "data"}`, `data` with camelCase keys
(`userId` with `username`, `message`, `messageId`, `reaction`, `watchDuration`, ...),
as much of it as you may see. (Before 0.2 items were
`{id: uuid, seq, stream_id, event_type, event_data, created_at}` with snake_case data.)
"""


@router.get("/events", response_model=EventPage, description=EVENTS_DOC)
async def events(
    stream_id: UUID,
    user: MaybeUser,
    access: AccessDep,
    db: DbDep,
    limit: Limit = 100,
    since: Annotated[int, Query(ge=0, description="seq cursor")] = 0,
    type: Annotated[str | None, Query(max_length=50), Storable] = None,
) -> dict[str, Any]:
    """Events oldest first after `since`; pass `next_cursor` as `since` to go on."""
    await access.visible(user, stream_id, fresh=True)
    async with db.acting(user) as conn:
        items = await activity.list_events(
            conn, stream_id, since=since, limit=limit, event_type=type
        )
    return {
        "items": [from_row(r) for r in items],
        "next_cursor": items[-1]["seq"] if items else since,
    }


@router.get("/analytics", response_model=StreamAnalytics)
async def stream_analytics(
    stream_id: UUID, user: CurrentUser, access: AccessDep, db: DbDep
) -> dict[str, Any]:
    """Owner only: viewers and watch time are the owner's business."""
    stream = await access.owned(user, stream_id)
    async with db.acting(user) as conn:
        return {
            **await analytics.for_stream(conn, stream),
            "media": await analytics.media(conn, stream_id),
        }


@router.post("/invite", status_code=201, response_model=Invited)
async def invite(
    stream_id: UUID, body: InviteIn, user: CurrentUser, access: AccessDep, db: DbDep
) -> dict[str, Any]:
    await access.owned(user, stream_id)
    if body.userId == user:
        raise Unprocessable("you cannot invite yourself", "invalid_invite")
    async with db.acting(user) as conn:
        if not await users.user_exists(conn, body.userId):
            raise NotFound("user not found", "user_not_found")
        created = await users.invite(conn, stream_id, user, body.userId)
    return {"stream_id": stream_id, "user_id": body.userId, "invited": True, "new": created}


@router.post(
    "/report", status_code=201, response_model=Report, dependencies=[rate_limited("report")]
)
async def report(
    stream_id: UUID, body: ReportIn, user: CurrentUser, access: AccessDep, db: DbDep
) -> dict[str, Any]:
    await access.visible(user, stream_id, fresh=True)
    async with db.acting(user) as conn:
        row = await activity.add_report(conn, stream_id, user, body.reason, body.details)
        if row is None:
            raise Conflict("you already reported this stream", "already_reported")
        await activity.add_event(
            conn, stream_id, "report", {"report_id": row["id"], "reason": body.reason}
        )
    return row
