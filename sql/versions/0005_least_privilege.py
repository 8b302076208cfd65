"""Least privilege: events redacted per audience, event inserts by type and role, owner-only
analytics, no function executable by PUBLIC, FORCE ROW LEVEL SECURITY on every table.

Revision ID: 0005
Revises: 0004
"""

from sql.migrate import run_sql_file

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    run_sql_file("0005_least_privilege.sql")
