"""Backpressure: quality degradation (issue 9).

Revision ID: 0013
Revises: 0012
"""

from sql.migrate import run_sql_file

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    run_sql_file("0013_backpressure.sql")
