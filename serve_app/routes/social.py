"""Friendships: request, then accept. Mutual once accepted."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter

from lumalive.errors import NotFound, Unprocessable
from lumalive.store import users
from serve_app.deps import CurrentUser, DbDep, rate_limited
from serve_app.responses import ERRORS, Friendship

router = APIRouter(prefix="/api/friends", tags=["friends"], responses=ERRORS)


def _check_other(me: UUID, other: UUID) -> None:
    if me == other:
        raise Unprocessable("you cannot befriend yourself", "invalid_friend")


@router.post(
    "/{user_id}", status_code=201, response_model=Friendship, dependencies=[rate_limited("friend")]
)
async def request_friend(user_id: UUID, user: CurrentUser, db: DbDep) -> dict[str, Any]:
    _check_other(user, user_id)
    async with db.acting(user) as conn:
        if not await users.user_exists(conn, user_id):
            raise NotFound("user not found", "user_not_found")
        status = await users.request_friend(conn, user, user_id)
    return {"user_id": user_id, "status": status}


@router.post("/{user_id}/accept", response_model=Friendship, dependencies=[rate_limited("friend")])
async def accept_friend(user_id: UUID, user: CurrentUser, db: DbDep) -> dict[str, Any]:
    _check_other(user, user_id)
    async with db.acting(user) as conn:
        status = await users.accept_friend(conn, user, user_id)
    if status is None:
        raise NotFound("no friend request from this user", "request_not_found")
    return {"user_id": user_id, "status": status}
