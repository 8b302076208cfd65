"""The API and actors log in as the application's own role, which cannot leave
row-level security: over its own connection `RESET ROLE` still leaves it bound by
the policies, `SET ROLE` to the schema owner is refused, and the role is neither
superuser nor BYPASSRLS (issue 13; `cluster/postgres.py`, `sql/0008_app_login.sql`)."""

from __future__ import annotations

import stat

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from lumalive.db import APPLICATION_NAME, Database
from tests.utils.api import BASE


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
async def app_db(settings):
    """The app's own login, in a pool of its own (a RESET ROLE outlives its transaction)."""
    database = Database(settings, pool_size=1)
    yield database
    await database.dispose()


async def _visible(conn, stream_id) -> bool:
    rows = await conn.execute(text("SELECT id FROM live_streams WHERE id = :s"), {"s": stream_id})
    return rows.first() is not None


async def test_reset_role_leaves_the_app_under_rls(app_db, make_user, make_stream):
    owner, stranger = await make_user("owner"), await make_user("stranger")
    stream = await make_stream(owner, privacy="private")
    for who, sees in ((stranger, False), (owner, True), (None, False)):
        async with app_db.acting(who.id if who else None) as conn:
            await conn.execute(text("RESET ROLE"))
            user = (await conn.execute(text("SELECT current_user"))).scalar_one()
            assert user == "lumalive_app"
            assert await _visible(conn, stream["id"]) is sees
            with pytest.raises(DBAPIError, match="permission denied"):
                async with conn.begin_nested():
                    await conn.execute(text("SELECT stream_key FROM live_streams"))


async def test_the_app_cannot_become_the_schema_owner(app_db):
    async with app_db.acting(None) as conn:
        owner = (
            await conn.execute(
                text("SELECT tableowner FROM pg_tables WHERE tablename = 'live_streams'")
            )
        ).scalar_one()
        assert owner != "lumalive_app"
        row = (
            await conn.execute(
                text(
                    "SELECT session_user, rolsuper, rolbypassrls, rolinherit,"
                    " (SELECT count(*) FROM pg_auth_members WHERE member = r.oid)"
                    " FROM pg_roles r WHERE rolname = session_user"
                )
            )
        ).one()
        assert tuple(row) == ("lumalive_app", False, False, False, 0)
        for statement in (f'SET ROLE "{owner}"', f'SET SESSION AUTHORIZATION "{owner}"'):
            with pytest.raises(DBAPIError, match="permission denied"):
                async with conn.begin_nested():
                    await conn.execute(text(statement))
        assert (await conn.execute(text("SELECT current_user"))).scalar_one() == "lumalive_app"


def test_the_login_needs_its_password_kept_out_of_the_repo(settings):
    path = settings.data_dir / "db_app_password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    url = make_url(settings.app_database_url)
    assert url.username == "lumalive_app" and url.password == path.read_text().strip()
    assert url.password not in (settings.database_url or "")
    dsn = _libpq(settings.app_database_url)
    psycopg.connect(dsn, connect_timeout=5).close()
    for wrong in ("", "not-the-password"):  # pgserver trusts everyone else on its socket
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(dsn, password=wrong, connect_timeout=5).close()


async def test_every_app_connection_is_the_app_login(settings, client, make_user, make_stream):
    """The API replicas and the stream actors connect as lumalive_app, never as the owner."""
    owner, viewer = await make_user("owner"), await make_user("viewer")
    stream = await make_stream(owner, start=True)  # the stream's actor writes
    r = await client.post(f"{BASE}/{stream['id']}/join", headers=viewer.auth)
    assert r.status_code == 200, r.text
    r = await client.post(
        f"{BASE}/{stream['id']}/chat", json={"message": "hi"}, headers=viewer.auth
    )
    assert r.status_code == 201, r.text
    with psycopg.connect(_libpq(settings.database_url)) as admin:
        users = admin.execute(
            "SELECT usename, count(*) FROM pg_stat_activity"
            " WHERE application_name = %s GROUP BY usename",
            (APPLICATION_NAME,),
        ).fetchall()
    assert dict(users).keys() == {"lumalive_app"}, users
    assert dict(users)["lumalive_app"] >= 2  # the API's and the stream actor's at least
