"""One Postgres LISTEN held for as long as a replica runs, reconnecting when the
connection drops: the event fan-out (`serve_app.fanout`) and the LL-HLS part waiter
(`serve_app.part_waiter`) each keep one, and differ only in the channel and in
what a notification and a (re)connect mean to them, so the loop lives here once.

Invariants:
- `on_listening` runs each time LISTEN is in place, before any notification of that
  connection: a caller that may have missed notifications while disconnected
  catches up there.
- A dropped connection is retried with a doubling back-off (0.5 s up to 5 s), reset
  once LISTEN is in place again; only cancellation ends the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import NoReturn

import psycopg

__all__ = ["listen_forever"]


async def listen_forever(
    dsn: str,
    role: str,
    channel: str,
    on_notify: Callable[[str], None],
    on_listening: Callable[[], None],
    log: logging.Logger,
    name: str,
) -> NoReturn:
    """LISTEN on `channel` as `role`, calling `on_notify` with each payload (see
    module docstring); a lost connection is logged on the caller's `log` as `name`'s."""
    backoff = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(f'SET ROLE "{role}"')
                await conn.execute(f"LISTEN {channel}")
                on_listening()
                backoff = 0.5
                async for note in conn.notifies():
                    on_notify(note.payload)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a dropped connection: reconnect
            log.warning("%s listener lost its connection; reconnecting", name, exc_info=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
