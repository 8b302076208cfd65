"""Typed calls from the API into the ingest actor's WebRTC sides: WHIP publishes
(`actors.whip_ingest`) and WHEP playbacks (`actors.whep_egress`, `play` / `end_play`;
`ban` ends a banned user's playbacks).

The route awaits `publish(...)` / `stop(...)`; what the actor raises comes back as
the domain error it is (Ray wraps a `LumaError` in a `RayTaskError`), and an ingest
that is not deployed or not answering is 503 `ingest_unavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any
from uuid import UUID

from ray.exceptions import RayError, RayTaskError

from actors import ingest_actor
from actors.whep_egress import WhepAnswer
from actors.whip_ingest import WhipAnswer
from lumalive.errors import LumaError, Unavailable

__all__ = ["ban", "end_play", "play", "publish", "stop"]

# Answering an offer gathers ICE candidates and may start the stream (a round trip to
# its actor and Postgres): seconds at most, unless the ingest is stuck.
_CALL_TIMEOUT_S = 30.0


async def publish(stream_id: UUID, owner_id: UUID, offer: str, peer: str) -> WhipAnswer:
    """The ingest's answer to a browser's offer to publish the stream."""
    answer: WhipAnswer = await _call(
        lambda h: h.whip_publish.remote(str(stream_id), owner_id, offer, peer)
    )
    return answer


async def stop(stream_id: UUID, resource: str) -> None:
    """End the browser's publish named by `resource` (the WHIP DELETE)."""
    await _call(lambda h: h.whip_stop.remote(str(stream_id), resource))


async def play(stream_id: UUID, caller: str, offer: str) -> WhepAnswer:
    """The ingest's answer to a viewer's offer to play the stream (WHEP)."""
    answer: WhepAnswer = await _call(lambda h: h.whep_play.remote(str(stream_id), caller, offer))
    return answer


async def end_play(stream_id: UUID, resource: str) -> None:
    """End the viewer's playback named by `resource` (the WHEP DELETE)."""
    await _call(lambda h: h.whep_stop.remote(str(stream_id), resource))


async def ban(stream_id: UUID, user_id: UUID) -> int:
    """The user was banned from the stream: end their WHEP playbacks of it (how many)."""
    ended: int = await _call(lambda h: h.whep_ban.remote(str(stream_id), str(user_id)))
    return ended


async def _call(op: Any) -> Any:
    handle = ingest_actor.lookup()
    if handle is None:
        raise Unavailable("there is no ingest to publish to", "ingest_unavailable", 5.0)
    try:
        async with asyncio.timeout(_CALL_TIMEOUT_S):
            ref: Awaitable[Any] = op(handle)
            return await ref
    except RayTaskError as exc:
        if isinstance(exc.cause, LumaError):
            raise exc.cause from None
        raise
    except (RayError, TimeoutError):
        raise Unavailable("the ingest is not answering; retry", "ingest_unavailable", 5.0) from None
