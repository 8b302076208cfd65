"""The embedded PostgreSQL used when DATABASE_URL is not set.

pgserver ships PostgreSQL 16 binaries in a wheel; the cluster lives in
`data_dir/pg` and survives restarts. External deployments set DATABASE_URL
and never touch this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["EmbeddedPostgres"]


class EmbeddedPostgres:
    """Start (or reuse) a local Postgres in `root` and give its SQLAlchemy URL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._server = None

    def start(self) -> str:
        import pgserver  # heavy import; only the embedded path needs it

        self.root.mkdir(parents=True, exist_ok=True)
        # pgserver counts handles across processes; the last one to stop stops
        # Postgres, so `lumalive token` beside a running `up` leaves it running.
        self._server = pgserver.get_server(self.root, cleanup_mode="stop")
        return self._server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)

    def stop(self, *, everyone: bool = False) -> None:
        """Release our handle; Postgres stops when it was the last one. `everyone=True`
        (what `lumalive down` means) stops it even if another process still holds a
        handle (a `lumalive token` left hanging, a stale entry in pgserver's list)."""
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()
        if everyone:
            self._stop_postmaster(server)

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
