"""Per-user stream quotas, counted in Postgres so that they hold across replicas:
streams live at once (`max_live_streams_per_user`) and streams created per hour
(`max_streams_created_per_hour`). A quota of 0 is no quota. Refusals are 429 with
Retry-After and codes `too_many_live_streams` / `too_many_streams_created`.

Each check takes the user's advisory lock (`lumalive.store.quotas.lock_user`) in
the caller's transaction; the caller makes the change it allows before that
transaction ends, so one user's concurrent requests are counted one at a time.
"""

from __future__ import annotations

import math
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from lumalive.errors import RateLimited
from lumalive.settings import Settings
from lumalive.store import quotas

__all__ = ["check_create", "check_start", "LIVE_RETRY_S"]

_HOUR_S = 3600
# A stream ends whenever its owner ends it; this is only a polite pause.
LIVE_RETRY_S = 60.0


async def check_create(conn: AsyncConnection, user: UUID, settings: Settings) -> None:
    """Before inserting a stream in `conn`'s transaction."""
    limit = settings.max_streams_created_per_hour
    if not limit:
        return
    await quotas.lock_user(conn, user)
    wait = await quotas.creation_wait_s(conn, user, limit, _HOUR_S)
    if wait > 0:
        raise RateLimited(
            f"at most {limit} streams may be created an hour; retry in {math.ceil(wait)} s",
            wait,
            "too_many_streams_created",
        )


async def check_start(conn: AsyncConnection, user: UUID, settings: Settings) -> None:
    """Before starting a stream while `conn`'s transaction stays open (it holds the
    user's lock until the stream is live)."""
    limit = settings.max_live_streams_per_user
    if not limit:
        return
    await quotas.lock_user(conn, user)
    live = await quotas.live_streams(conn, user)
    if live >= limit:
        raise RateLimited(
            f"you have {live} live streams, the most allowed; end one to start another",
            LIVE_RETRY_S,
            "too_many_live_streams",
        )
