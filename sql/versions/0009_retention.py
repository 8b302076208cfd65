"""Retention (issue 9): delete a stream, expire media past the DVR window and VOD lifetime.

Revision ID: 0009
Revises: 0008
"""

from sql.migrate import run_sql_file

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    run_sql_file("0009_retention.sql")
