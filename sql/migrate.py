"""Apply the schema with Alembic. Idempotent: upgrading a current database is a no-op."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command, op
from alembic.config import Config

__all__ = ["alembic_config", "run_sql_file", "upgrade"]

SQL_DIR = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at this package, for the given sync SQLAlchemy URL."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SQL_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str) -> None:
    """Bring the database to the newest revision."""
    command.upgrade(alembic_config(database_url), "head")


def run_sql_file(name: str) -> None:
    """Run a whole .sql file on the migration's connection.

    Goes to the psycopg connection directly so the file's `%` and `:` are
    not taken for bind parameters.
    """
    text = resources.files("sql").joinpath(name).read_text()
    op.get_bind().connection.driver_connection.execute(text)
