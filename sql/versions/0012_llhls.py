"""Low latency: LL-HLS parts and latency mode (issue 10).

Revision ID: 0012
Revises: 0011
"""

from sql.migrate import run_sql_file

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    run_sql_file("0012_llhls.sql")
