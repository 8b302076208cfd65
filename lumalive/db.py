"""Database access under row-level security.

Invariant: every connection from the application runs as the RLS-bound role, and
every transaction names its acting user with `set_config('lumalive.user_id', …,
true)` before any statement, so Postgres — not Python — decides what a user may see
or change. The API and actors log in as that role itself (`Settings.app_url`: the
app's own login, `lumalive_app` with a password; see `cluster.postgres`), which is
neither superuser nor BYPASSRLS and a member of no role, so a statement that
`RESET ROLE`s, or tries `SET ROLE` to the schema owner, gains nothing. The `SET ROLE`
on connect is then a no-op; it still binds a deployment that connects as the owner
(no `LUMALIVE_APP_DATABASE_URL`: the older setup, which a `RESET ROLE` escapes).

A database that is down or slow costs a request a bounded time: connecting gives up
after `db_connect_timeout_s`, a statement after `db_statement_timeout_s`, and
`as_unavailable` names such faults as 503s the client may retry. Bound parameters
never reach logs or error messages (`hide_parameters`): they include stream keys.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import psycopg
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from lumalive.errors import Unavailable
from lumalive.settings import Settings

__all__ = ["APPLICATION_NAME", "Database", "set_actor", "as_unavailable", "RETRY_AFTER_S"]

# What a client is told to wait before retrying after a database fault.
RETRY_AFTER_S = 5.0

_SET_ACTOR = text("SELECT set_config('lumalive.user_id', :uid, true)")
_PING = text("SELECT 1")


# What the app's connections call themselves in pg_stat_activity.
APPLICATION_NAME = "lumalive"


def _require_url(settings: Settings) -> str:
    url = settings.app_url
    if not url:
        raise RuntimeError(
            "DATABASE_URL is not set (lumalive up sets it for the embedded Postgres)"
        )
    return url


class Database:
    """One async engine per process; hands out transactions bound to an acting user."""

    def __init__(self, settings: Settings, pool_size: int | None = None) -> None:
        self.engine: AsyncEngine = create_async_engine(
            _require_url(settings),
            pool_size=pool_size or settings.db_pool_size,
            max_overflow=pool_size or settings.db_pool_size,
            pool_pre_ping=False,
            hide_parameters=True,
            # libpq counts whole seconds (and at least 2).
            connect_args={
                "connect_timeout": max(2, math.ceil(settings.db_connect_timeout_s)),
                "application_name": APPLICATION_NAME,
            },
        )
        # Set per connection (not as a startup option), so poolers such as PgBouncer accept it.
        setup = (
            f'SET ROLE "{settings.app_role}";'
            f" SET statement_timeout = {round(settings.db_statement_timeout_s * 1000)}"
        )

        @event.listens_for(self.engine.sync_engine, "connect")
        def _bind_role(dbapi_conn: Any, _record: Any) -> None:  # a SQLAlchemy hook
            cur = dbapi_conn.cursor()
            cur.execute(setup)
            cur.close()
            dbapi_conn.commit()

    @asynccontextmanager
    async def acting(self, user_id: UUID | str | None) -> AsyncIterator[AsyncConnection]:
        """A transaction in which RLS sees `user_id` (None: anonymous). Commits on exit."""
        async with contextlib.AsyncExitStack() as stack:
            yield await self._begin_acting(stack, user_id)

    async def _begin_acting(
        self, stack: contextlib.AsyncExitStack, user_id: UUID | str | None
    ) -> AsyncConnection:
        """Begin, and name the actor. A pooled connection that died while idle (Postgres
        restarted, failed over) is found out by this first statement, before the
        transaction did anything: that costs a retry on a fresh connection (SQLAlchemy
        drops the pool's other connections of that age with it), not a failed request."""
        for attempt in (1, 2):
            tx = contextlib.AsyncExitStack()
            conn = await tx.enter_async_context(self.engine.begin())
            try:
                await set_actor(conn, user_id)
            except exc.DBAPIError as error:
                await tx.__aexit__(type(error), error, error.__traceback__)
                if attempt == 2 or not error.connection_invalidated:
                    raise
                continue
            stack.push_async_exit(tx)
            return conn
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        """One round trip as the anonymous user: the database answers."""
        async with self.acting(None) as conn:
            await conn.execute(_PING)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def set_actor(conn: AsyncConnection, user_id: UUID | str | None) -> None:
    """Name the acting user for the rest of this transaction."""
    await conn.execute(_SET_ACTOR, {"uid": str(user_id) if user_id else ""})


def as_unavailable(error: BaseException) -> Unavailable | None:
    """The 503 a database fault means to a client (the database is down, unreachable,
    overloaded or too slow), with a Retry-After; None if `error` is not one. Raw
    psycopg errors count too: the event hub's LISTEN connection is psycopg's own."""
    if isinstance(error, exc.TimeoutError):  # no pooled connection came free in time
        return Unavailable("the database is busy; retry", "database_busy", RETRY_AFTER_S)
    cause = error.orig if isinstance(error, exc.DBAPIError) else error
    if isinstance(cause, psycopg.errors.QueryCanceled):  # statement_timeout
        return Unavailable("the database took too long; retry", "database_timeout", RETRY_AFTER_S)
    if isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError) or (
        isinstance(error, exc.DBAPIError) and error.connection_invalidated
    ):
        return Unavailable(
            "the database is not answering; retry", "database_unavailable", RETRY_AFTER_S
        )
    return None
