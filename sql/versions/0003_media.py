"""Media: renditions, published segments, segment moderation and quality, with RLS.

Revision ID: 0003
Revises: 0002
"""

from sql.migrate import run_sql_file

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    run_sql_file("0003_media.sql")
