"""Database access under row-level security.

Invariant: every connection from the application runs as the RLS-bound role
(`SET ROLE lumalive_app` on connect), and every transaction names its acting
user with `set_config('lumalive.user_id', …, true)` before any statement, so
Postgres — not Python — decides what a user may see or change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from lumalive.settings import Settings

__all__ = ["Database", "set_actor"]

_SET_ACTOR = text("SELECT set_config('lumalive.user_id', :uid, true)")
_PING = text("SELECT 1")


def _require_url(settings: Settings) -> str:
    if not settings.database_url:
        raise RuntimeError(
            "DATABASE_URL is not set (lumalive up sets it for the embedded Postgres)"
        )
    return settings.database_url


class Database:
    """One async engine per process; hands out transactions bound to an acting user."""

    def __init__(self, settings: Settings, pool_size: int | None = None) -> None:
        self.engine: AsyncEngine = create_async_engine(
            _require_url(settings),
            pool_size=pool_size or settings.db_pool_size,
            max_overflow=pool_size or settings.db_pool_size,
            pool_pre_ping=False,
        )
        role = settings.app_role

        @event.listens_for(self.engine.sync_engine, "connect")
        def _bind_role(dbapi_conn: Any, _record: Any) -> None:  # a SQLAlchemy hook
            cur = dbapi_conn.cursor()
            cur.execute(f'SET ROLE "{role}"')
            cur.close()
            dbapi_conn.commit()

    @asynccontextmanager
    async def acting(self, user_id: UUID | str | None) -> AsyncIterator[AsyncConnection]:
        """A transaction in which RLS sees `user_id` (None: anonymous). Commits on exit."""
        async with self.engine.begin() as conn:
            await set_actor(conn, user_id)
            yield conn

    async def ping(self) -> None:
        """One round trip as the anonymous user: the database answers."""
        async with self.acting(None) as conn:
            await conn.execute(_PING)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def set_actor(conn: AsyncConnection, user_id: UUID | str | None) -> None:
    """Name the acting user for the rest of this transaction."""
    await conn.execute(_SET_ACTOR, {"uid": str(user_id) if user_id else ""})
