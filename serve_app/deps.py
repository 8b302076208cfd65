"""Typed FastAPI dependencies: the services and the calling user."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request

from lumalive.errors import Unauthorized
from serve_app.services import Services

__all__ = ["ServicesDep", "MaybeUser", "User", "Limit"]


async def _services(request: Request) -> Services:
    """The replica's services, built on first use inside the serving process
    (Serve pickles the app to its replicas, so they cannot be built earlier).
    `async` so FastAPI calls it on the event loop: a plain `def` dependency costs
    every request a hop through the thread pool."""
    state = request.app.state
    if state.services is None:
        state.services = Services(state.settings)
    return state.services


ServicesDep = Annotated[Services, Depends(_services)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authorization header must be 'Bearer <token>'", "invalid_token")
        return token.strip()
    # Players and EventSource cannot always send headers.
    return request.query_params.get("access_token")


async def _maybe_user(request: Request, services: ServicesDep) -> UUID | None:
    token = _bearer(request)
    if token is None:
        return None
    user_id = services.tokens.verify(token)
    await services.ensure_user(user_id)
    return user_id


async def _user(user: Annotated[UUID | None, Depends(_maybe_user)]) -> UUID:
    if user is None:
        raise Unauthorized("this endpoint needs a bearer token", "missing_token")
    return user


MaybeUser = Annotated[UUID | None, Depends(_maybe_user)]
User = Annotated[UUID, Depends(_user)]
Limit = Annotated[int, Query(ge=1, le=100, description="page size")]
