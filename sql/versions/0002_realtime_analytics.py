"""Realtime and analytics: events in commit order with NOTIFY, rollup tables, stream embeddings.

Revision ID: 0002
Revises: 0001
"""

from sql.migrate import run_sql_file

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    run_sql_file("0002_realtime_analytics.sql")
