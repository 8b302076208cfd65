"""The embedded PostgreSQL used when DATABASE_URL is not set.

pgserver ships PostgreSQL 16 binaries in a wheel; the cluster lives in
`data_dir/pg` and survives restarts. External deployments set DATABASE_URL
(and LUMALIVE_APP_DATABASE_URL) and never touch this module.

Two logins: the superuser pgserver makes (trusted on its own socket) owns the schema
and runs migrations; the API and actors log in as the application role (`app_login`),
which is neither superuser nor BYPASSRLS, with a password generated once into
`data_dir/db_app_password` (mode 600), and which pg_hba makes present it. Roles
belong to the cluster, not to a migration, so this module gives it its login.
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

__all__ = ["EmbeddedPostgres", "app_password"]

# Before pgserver's own `trust` lines: the first matching line decides.
_HBA_MARK = "# lumalive: the application's login presents its password"


def app_password(path: Path) -> str:
    """The application login's password, generated once into `path` (mode 600), like
    the JWT secret: never in the repo, the same across restarts."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class EmbeddedPostgres:
    """Start (or reuse) a local Postgres in `root` and give its SQLAlchemy URL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._server = None
        self._socket_dir: str | None = None

    def start(self) -> str:
        """The superuser's URL (migrations, the schema owner)."""
        import pgserver  # heavy import; only the embedded path needs it

        self.root.mkdir(parents=True, exist_ok=True)
        # pgserver counts handles across processes; the last one to stop stops
        # Postgres, so `lumalive token` beside a running `up` leaves it running.
        self._server = pgserver.get_server(self.root, cleanup_mode="stop")
        return self._server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)

    def app_login(self, owner_url: str, role: str, password_file: Path) -> str:
        """Let `role` (made by the migrations, NOLOGIN) log in with the password kept in
        `password_file`, and only with it; its URL. Idempotent: run on every start, after
        migrating. The password reaches Postgres as a SCRAM verifier, never in clear."""
        password = app_password(password_file)
        self._require_password(role)
        with psycopg.connect(_libpq(owner_url), autocommit=True) as conn:
            verifier = conn.pgconn.encrypt_password(
                password.encode(), role.encode(), b"scram-sha-256"
            )
            conn.execute(
                sql.SQL(
                    "ALTER ROLE {} WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
                    " NOREPLICATION NOINHERIT PASSWORD {}"
                ).format(sql.Identifier(role), sql.Literal(verifier.decode()))
            )
            conn.execute("SELECT pg_reload_conf()")
        url = make_url(owner_url).set(username=role, password=password)
        return url.render_as_string(hide_password=False)

    def _require_password(self, role: str) -> None:
        """pgserver trusts every local connection; the app's login must present its
        password (pg_hba: the first matching line wins, so ours go first)."""
        hba = self.root / "pg_hba.conf"
        text = hba.read_text()
        if _HBA_MARK in text:
            return
        ours = (
            f"{_HBA_MARK} (cluster/postgres.py)\n"
            f"local all {role} scram-sha-256\n"
            f"host  all {role} all scram-sha-256\n"
        )
        hba.write_text(ours + text)  # in place: keeps the file's owner and mode

    def stop(self, *, everyone: bool = False) -> None:
        """Release our handle; Postgres stops when it was the last one. `everyone=True`
        (what `lumalive down` means) stops it even if another process still holds a
        handle (a `lumalive token` left hanging, a stale entry in pgserver's list)."""
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()
        # After `halt`/`resume` the postmaster is one pgserver did not start: its handle
        # would leave it running.
        if everyone or self._socket_dir is not None:
            self._stop_postmaster(server)

    def halt(self) -> None:
        """Stop the running Postgres at once (fast shutdown) without releasing any
        handle: the fault tests' database outage. `resume` starts it again."""
        from pgserver.postgres_server import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.root)
        assert info is not None and info.is_running(), "Postgres is not running"
        self._socket_dir = str(info.socket_dir)
        try:
            self._pg_ctl(["-w", "-m", "fast", "stop"])
        except RuntimeError:
            if info.is_running():  # pg_ctl may give up waiting on a server that did stop
                raise

    def resume(self) -> None:
        """Start Postgres again after `halt`, on the same socket: URLs stay valid."""
        assert self._socket_dir is not None, "resume follows halt"
        self._pg_ctl(
            [
                "-w",
                "-o",
                '-h ""',
                "-o",
                f"-k {self._socket_dir}",
                "-l",
                str(self.root / "log"),
                "start",
            ]
        )

    def _pg_ctl(self, args: list[str]) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        # As the user that owns the cluster (pgserver runs Postgres as `pgserver` under root).
        uid = self.root.stat().st_uid
        kwargs: dict[str, Any] = {"user": pwd.getpwuid(uid).pw_name} if os.geteuid() != uid else {}
        done = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.root), *args],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
            **kwargs,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {args[-1]} failed: {done.stdout} {done.stderr}".strip())

    def _stop_postmaster(self, server: Any) -> None:
        import pgserver
        from pgserver.postgres_server import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.root)
        if info is None or not info.is_running():
            return
        # As the user pgserver runs Postgres as (it does not run as root).
        user = getattr(server, "system_user", None) if server is not None else None
        kwargs = {"user": user} if user else {}
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.root, **kwargs)
