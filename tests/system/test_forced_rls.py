"""FORCE ROW LEVEL SECURITY (sql/0005) where it binds: a schema owner that is neither
superuser nor BYPASSRLS. (The embedded Postgres migrates as a superuser, whom Postgres
exempts from row-level security altogether, so the rest of the suite cannot tell.)

In a database of its own, owned by such a role: the migrations run; the app's writes
through the owner's SECURITY DEFINER triggers keep the counters true; the analytics job,
an operator session, sees every row; and a connection as the owner that names an acting
user, as the app does, sees only that user's rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from cluster import analytics_job
from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from lumalive.store import activity, streams, users
from sql.migrate import upgrade


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="module")
async def owned(settings: Settings) -> AsyncIterator[Settings]:
    """Settings whose DATABASE_URL is a fresh database owned by a plain role."""
    role, name = f"owner_{uuid.uuid4().hex[:8]}", f"forced_{uuid.uuid4().hex[:8]}"
    admin = _libpq(settings.database_url or "")
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as su:
        await su.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS")
        await su.execute(f"GRANT lumalive_app TO {role}")  # to SET ROLE, as the app does
        await su.execute(f"CREATE DATABASE {name} OWNER {role}")
    url = make_url(settings.database_url or "").set(username=role, database=name)
    owner_url = url.render_as_string(hide_password=False)  # the app too, with SET ROLE
    yield settings.model_copy(update={"database_url": owner_url, "app_database_url": None})
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as su:
        await su.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await su.execute(f"REVOKE SET ON PARAMETER lumalive.definer FROM {role}")
        await su.execute(f"DROP ROLE {role}")


@pytest.fixture(scope="module")
async def refused(settings: Settings, owned: Settings) -> str:
    """Migrate as the plain owner: refused at 0005 until a superuser lets it mark its
    SECURITY DEFINER functions (Postgres's rule for custom settings); then done.
    The hint it was refused with."""
    url = owned.database_url or ""
    # (raised by psycopg itself: migrations run their SQL on the driver's connection)
    with pytest.raises(psycopg.Error, match="may not set lumalive.definer") as err:
        await asyncio.to_thread(upgrade, url)
    hint = str(err.value.diag.message_hint)
    async with await psycopg.AsyncConnection.connect(
        _libpq(settings.database_url or ""), autocommit=True
    ) as su:
        await su.execute(f"GRANT SET ON PARAMETER lumalive.definer TO {make_url(url).username}")
    await asyncio.to_thread(upgrade, url)  # 0001-0004 stayed; 0005 goes in now
    return hint


def test_a_plain_owner_is_told_what_to_grant(refused: str, owned: Settings) -> None:
    role = make_url(owned.database_url or "").username
    assert refused.startswith(
        f"As a superuser, run: GRANT SET ON PARAMETER lumalive.definer TO {role};"
    )


@pytest.fixture(scope="module")
async def activity_done(owned: Settings, refused: str) -> AsyncIterator[dict[str, Any]]:
    """Through the app's own code (SET ROLE lumalive_app, acting users): a stream
    with a viewer who chats, deletes the message and leaves, then the end."""
    db = Database(owned, pool_size=2)
    try:
        async with db.acting(None) as conn:
            alice = await users.create_named_user(conn, f"alice-{uuid.uuid4().hex[:6]}")
            bob = await users.create_named_user(conn, f"bob-{uuid.uuid4().hex[:6]}")
        new = streams.NewStream(
            user_id=alice,
            title="forced",
            description="",
            quality="1080p",
            bitrate=1000,
            privacy="public",
            category="general",
            tags=[],
            is_nsfw=False,
            ai_features={},
            stream_key=f"live_{uuid.uuid4().hex}",
        )
        async with db.acting(alice) as conn:
            sid = (await streams.insert(conn, new))["id"]
            await streams.transition(conn, sid, StreamStatus.CREATED, StreamStatus.LIVE)
            await activity.add_event(conn, sid, "stream_started", {"user_id": alice})
        async with db.acting(bob) as conn:
            assert await activity.open_viewing(conn, sid, bob)
            await activity.add_event(conn, sid, "viewer_joined", {"user_id": bob})
            msg = await activity.add_chat(conn, sid, bob, "secret plans", False, 0.0)
            data = {"message_id": msg["id"], "user_id": bob, "message": "secret plans"}
            await activity.add_event(conn, sid, "chat_message", data)
        async with db.acting(bob) as conn:
            assert await activity.soft_delete_chat(conn, sid, msg["id"])
            assert await activity.close_viewing(conn, sid, bob) is not None
        async with db.acting(alice) as conn:
            await streams.transition(conn, sid, StreamStatus.LIVE, StreamStatus.ENDED, "done")
            row = await streams.get(conn, sid)
            events = await activity.list_events(conn, sid, since=0, limit=100)
        yield {"sid": sid, "alice": alice, "bob": bob, "row": row, "events": events}
    finally:
        await db.dispose()


async def test_definer_triggers_keep_the_counters_under_force(activity_done) -> None:
    row = activity_done["row"]
    assert (row["status"], row["viewers"], row["peak_viewers"]) == ("ended", 0, 1)
    assert row["analytics"]["unique_viewers"] == 1 and row["analytics"]["chat_messages"] == 1
    assert "total_watch_seconds" in row["analytics"]
    [chat] = [e for e in activity_done["events"] if e["event_type"] == "chat_message"]
    assert chat["event_data"].get("deleted") is True and "message" not in chat["event_data"]


async def test_the_owner_connection_acting_for_a_user_sees_only_their_rows(
    owned, activity_done
) -> None:
    """The owner role without SET ROLE: FORCE applies the users' policies to it."""
    sid, bob = activity_done["sid"], activity_done["bob"]
    async with await psycopg.AsyncConnection.connect(_libpq(owned.database_url or "")) as conn:
        for acting, viewings in ((None, 0), (bob, 1)):
            async with conn.transaction():
                uid = str(acting) if acting else ""
                await conn.execute("SELECT set_config('lumalive.user_id', %s, true)", (uid,))
                n = await (
                    await conn.execute(
                        "SELECT count(*) FROM live_stream_viewers WHERE stream_id = %s", (sid,)
                    )
                ).fetchone()
                assert n == (viewings,), acting
                reports = await (
                    await conn.execute("SELECT count(*) FROM stream_reports")
                ).fetchone()
                assert reports == (0,)


async def test_the_analytics_job_still_sees_every_row(owned, activity_done) -> None:
    """An operator session (it names no acting user) reads and writes everything."""
    result = await asyncio.to_thread(analytics_job.run, owned, None, progress=False)
    assert result["stream_days"] >= 1 and result["category_days"] >= 1
    async with await psycopg.AsyncConnection.connect(_libpq(owned.database_url or "")) as conn:
        row = await (
            await conn.execute(
                "SELECT unique_viewers, chat_messages FROM stream_daily_rollups"
                " WHERE stream_id = %s",
                (activity_done["sid"],),
            )
        ).fetchall()
    assert row == [(1, 1)]
