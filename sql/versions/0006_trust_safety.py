"""Trust and safety: moderators, bans, reports, audit log, NSFW opt-in (issue 14).

Revision ID: 0006
Revises: 0005
"""

from sql.migrate import run_sql_file

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    run_sql_file("0006_trust_safety.sql")
