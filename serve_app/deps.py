"""Typed FastAPI dependencies: the calling user, and each piece of the replica a route uses.

Every piece is built once per replica, on first use, inside the serving process
(`serve_app.replica`). The functions are `async` so FastAPI calls them on the
event loop: a plain `def` dependency costs every request a hop through the
thread pool. They take an `HTTPConnection`, so WebSocket routes use them too.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Query
from starlette.requests import HTTPConnection

from actors.stream_gateway import StreamGateway
from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.errors import Unauthorized
from lumalive.settings import Settings
from media.storage import SegmentStorage
from models.moderation import ChatModerator
from serve_app.callers import Callers
from serve_app.embeddings import StreamEmbeddings
from serve_app.fanout import EventHub
from serve_app.limits import Action, ConnectionLimits
from serve_app.part_waiter import PartWaiter
from serve_app.replica import Replica
from serve_app.stream_access import StreamAccess

__all__ = [
    "SettingsDep",
    "DbDep",
    "TokensDep",
    "CallersDep",
    "AccessDep",
    "GatewayDep",
    "EventsDep",
    "ModeratorDep",
    "MediaStorageDep",
    "EmbeddingsDep",
    "ConnectionsDep",
    "PartWaiterDep",
    "MaybeUser",
    "CurrentUser",
    "Limit",
    "bearer_token",
    "maybe_user",
    "rate_limited",
]


async def _replica(conn: HTTPConnection) -> Replica:
    state = conn.app.state
    replica: Replica | None = state.replica
    if replica is None:
        replica = state.replica = Replica(state.settings)
    return replica


_ReplicaDep = Annotated[Replica, Depends(_replica)]


async def _settings(conn: HTTPConnection) -> Settings:
    settings: Settings = conn.app.state.settings
    return settings


async def _db(replica: _ReplicaDep) -> Database:
    return replica.db


async def _tokens(replica: _ReplicaDep) -> TokenService:
    return replica.tokens


async def _callers(replica: _ReplicaDep) -> Callers:
    return replica.callers


async def _access(replica: _ReplicaDep) -> StreamAccess:
    return replica.access


async def _gateway(replica: _ReplicaDep) -> StreamGateway:
    return replica.gateway


async def _events(replica: _ReplicaDep) -> EventHub:
    return replica.events


async def _moderator(replica: _ReplicaDep) -> ChatModerator:
    return replica.moderator


async def _media(replica: _ReplicaDep) -> SegmentStorage:
    return replica.media


async def _embeddings(replica: _ReplicaDep) -> StreamEmbeddings:
    return replica.embeddings


async def _connections(replica: _ReplicaDep) -> ConnectionLimits:
    return replica.connections


SettingsDep = Annotated[Settings, Depends(_settings)]
DbDep = Annotated[Database, Depends(_db)]
TokensDep = Annotated[TokenService, Depends(_tokens)]
CallersDep = Annotated[Callers, Depends(_callers)]
AccessDep = Annotated[StreamAccess, Depends(_access)]
GatewayDep = Annotated[StreamGateway, Depends(_gateway)]
EventsDep = Annotated[EventHub, Depends(_events)]
ModeratorDep = Annotated[ChatModerator, Depends(_moderator)]
MediaStorageDep = Annotated[SegmentStorage, Depends(_media)]
EmbeddingsDep = Annotated[StreamEmbeddings, Depends(_embeddings)]
ConnectionsDep = Annotated[ConnectionLimits, Depends(_connections)]


async def _parts(replica: _ReplicaDep) -> PartWaiter:
    return replica.parts


PartWaiterDep = Annotated[PartWaiter, Depends(_parts)]  # LL-HLS blocking reloads


def bearer_token(conn: HTTPConnection) -> str | None:
    """The access token of a request or WebSocket: `Authorization: Bearer <token>`,
    else `?access_token=` (players, EventSource and browsers' WebSocket cannot
    send headers); None if there is neither."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authorization header must be 'Bearer <token>'", "invalid_token")
        return token.strip()
    return conn.query_params.get("access_token")


async def maybe_user(conn: HTTPConnection, callers: CallersDep) -> UUID | None:
    """The calling user, None without a token, Unauthorized for a bad one. The one
    check for HTTP routes (as `MaybeUser`) and the WebSocket (which calls it, so it
    can answer with a close code)."""
    token = bearer_token(conn)
    if token is None:
        return None
    return await callers.identify(token)


async def _current_user(user: Annotated[UUID | None, Depends(maybe_user)]) -> UUID:
    if user is None:
        raise Unauthorized("this endpoint needs a bearer token", "missing_token")
    return user


MaybeUser = Annotated[UUID | None, Depends(maybe_user)]
CurrentUser = Annotated[UUID, Depends(_current_user)]
Limit = Annotated[int, Query(ge=1, le=100, description="page size")]


class _RateLimited:
    """A class, not a closure: Serve pickles the app to its replicas, and a closure's
    string annotations (`from __future__ import annotations`) do not survive that."""

    def __init__(self, action: Action) -> None:
        self.action: Action = action

    async def __call__(self, user: CurrentUser, replica: _ReplicaDep) -> None:
        replica.limits.take(self.action, user)


def rate_limited(action: Action) -> Any:
    """A route dependency (`dependencies=[rate_limited("join")]`): counts the request
    against the calling user's `action` bucket (`serve_app.limits`), 429 when empty.
    Needs a token first: an anonymous request is 401 before it is counted."""
    return Depends(_RateLimited(action))
