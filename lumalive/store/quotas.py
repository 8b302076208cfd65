"""The counts behind the per-user stream quotas, read as the user (RLS shows a user
all of their own streams).

`lock_user` serialises one user's quota checks across every replica: a check and
the change it allows run under the lock, so concurrent requests cannot both pass
on the same last slot.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["lock_user", "live_streams", "creation_wait_s"]

_LOCK_SPACE = 0x4C51  # the first key of this module's advisory locks ("LQ")


async def lock_user(conn: AsyncConnection, user_id: UUID) -> None:
    """Until this transaction ends, others that lock the same user wait."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:space, hashtext(:uid))"),
        {"space": _LOCK_SPACE, "uid": str(user_id)},
    )


async def live_streams(conn: AsyncConnection, user_id: UUID) -> int:
    """How many of the user's streams are live now."""
    count: int = (
        await conn.execute(
            text("SELECT count(*) FROM live_streams WHERE user_id = :u AND is_live"),
            {"u": user_id},
        )
    ).scalar_one()
    return count


async def creation_wait_s(conn: AsyncConnection, user_id: UUID, limit: int, window_s: int) -> float:
    """Seconds until the user may create another stream, if at most `limit` may be
    created in any `window_s`: 0 if now, else until the `limit`-th newest of those
    in the window leaves it."""
    wait = (
        await conn.execute(
            text(
                "SELECT EXTRACT(EPOCH FROM created_at + make_interval(secs => :w) - now())"
                " FROM live_streams WHERE user_id = :u"
                " AND created_at > now() - make_interval(secs => :w)"
                " ORDER BY created_at DESC OFFSET :skip LIMIT 1"
            ),
            {"u": user_id, "w": window_s, "skip": limit - 1},
        )
    ).scalar()
    return max(0.0, float(wait)) if wait is not None else 0.0
