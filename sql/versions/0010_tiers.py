"""Quality tiers: stream rendition plans and 20K tile sets (issue 8).

Revision ID: 0010
Revises: 0009
"""

from sql.migrate import run_sql_file

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    run_sql_file("0010_tiers.sql")
