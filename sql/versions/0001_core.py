"""Core schema: users, friendships, streams, chat, reactions, viewers, events, RLS.

Revision ID: 0001
"""

from sql.migrate import run_sql_file

revision = "0001"
down_revision = None


def upgrade() -> None:
    run_sql_file("0001_core.sql")
