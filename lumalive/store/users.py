"""Users and the social graph (friendships, invites)."""

from __future__ import annotations

from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from lumalive.db import set_actor

__all__ = [
    "ensure_user",
    "create_named_user",
    "user_exists",
    "request_friend",
    "accept_friend",
    "invite",
]


async def ensure_user(conn: AsyncConnection, user_id: UUID) -> bool:
    """Provision a row for a token's subject (Supabase users arrive without one),
    unless the user was deleted (sql/0004). Whether the user has a row now."""
    exists: bool = (
        await conn.execute(
            text(
                "WITH made AS (INSERT INTO users (id) SELECT :id WHERE NOT user_deleted(:id)"
                " ON CONFLICT DO NOTHING RETURNING id)"
                " SELECT EXISTS (SELECT 1 FROM made)"
                " OR EXISTS (SELECT 1 FROM users WHERE id = :id)"
            ),
            {"id": user_id},
        )
    ).scalar_one()
    return exists


async def create_named_user(conn: AsyncConnection, username: str) -> UUID:
    """The id of `username`, creating the user if new (acts as the new user to insert)."""
    existing: UUID | None = (
        await conn.execute(text("SELECT id FROM users WHERE username = :u"), {"u": username})
    ).scalar()
    if existing is not None:
        return existing
    new_id = uuid4()
    await set_actor(conn, new_id)
    await conn.execute(
        text("INSERT INTO users (id, username) VALUES (:id, :u)"), {"id": new_id, "u": username}
    )
    return new_id


async def user_exists(conn: AsyncConnection, user_id: UUID) -> bool:
    return (
        await conn.execute(text("SELECT 1 FROM users WHERE id = :id"), {"id": user_id})
    ).first() is not None


# The first key of this module's advisory locks ("LF").
_FRIEND_LOCK_SPACE = 0x4C46


async def request_friend(conn: AsyncConnection, me: UUID, other: UUID) -> str:
    """Ask `other` for friendship; if they already asked me, that accepts it.
    Returns the friendship's status. Idempotent, also when racing: requests of the
    same pair, either way round, take the pair's lock until their transaction ends,
    so a second one finds the first's row (one row per pair, never a unique
    violation; the primary key alone would let A→B and B→A both insert)."""
    low, high = sorted((str(me), str(other)))
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:space, hashtext(:pair))"),
        {"space": _FRIEND_LOCK_SPACE, "pair": f"{low}:{high}"},
    )
    row = (
        await conn.execute(
            text(
                "SELECT requester_id, status FROM friendships WHERE (requester_id, addressee_id)"
                " IN ((:me, :o), (:o, :me))"
            ),
            {"me": me, "o": other},
        )
    ).first()
    if row is None:
        await conn.execute(
            text(
                "INSERT INTO friendships (requester_id, addressee_id) VALUES (:me, :o)"
                " ON CONFLICT DO NOTHING"
            ),
            {"me": me, "o": other},
        )
        return "pending"
    if row.status == "pending" and row.requester_id == other:
        return await accept_friend(conn, me, other) or "pending"
    status: str = row.status
    return status


async def accept_friend(conn: AsyncConnection, me: UUID, requester: UUID) -> str | None:
    """Accept a pending request from `requester`; None if there is none."""
    row = (
        await conn.execute(
            text(
                "UPDATE friendships SET status = 'accepted', accepted_at = now()"
                " WHERE requester_id = :r AND addressee_id = :me RETURNING status"
            ),
            {"r": requester, "me": me},
        )
    ).first()
    return row.status if row else None


async def invite(conn: AsyncConnection, stream_id: UUID, owner: UUID, user_id: UUID) -> bool:
    """Invite a user to a stream; False if they were already invited."""
    result = await conn.execute(
        text(
            "INSERT INTO stream_invites (stream_id, user_id, invited_by) VALUES (:s, :u, :o)"
            " ON CONFLICT DO NOTHING"
        ),
        {"s": stream_id, "u": user_id, "o": owner},
    )
    return result.rowcount == 1
