"""The embedded PostgreSQL used when DATABASE_URL is not set.

pgserver ships PostgreSQL 16 binaries in a wheel; the cluster lives in
`data_dir/pg` and survives restarts. External deployments set DATABASE_URL
and never touch this module.
"""

from __future__ import annotations

from pathlib import Path

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

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
