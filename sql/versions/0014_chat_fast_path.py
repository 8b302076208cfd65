"""Control plane: chat and event writes in one call (issue 12).

Revision ID: 0014
Revises: 0013
"""

from sql.migrate import run_sql_file

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    run_sql_file("0014_chat_fast_path.sql")
