"""Deleted users: remembered, so that their still-valid tokens are refused.

Revision ID: 0004
Revises: 0003
"""

from sql.migrate import run_sql_file

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    run_sql_file("0004_deleted_users.sql")
