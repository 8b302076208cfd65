"""HDR renditions (issue 8).

Revision ID: 0011
Revises: 0010
"""

from sql.migrate import run_sql_file

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    run_sql_file("0011_hdr.sql")
