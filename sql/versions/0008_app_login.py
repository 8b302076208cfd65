"""Least privilege at login: the application's own non-superuser login role (issue 13).

Revision ID: 0008
Revises: 0007
"""

from sql.migrate import run_sql_file

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    run_sql_file("0008_app_login.sql")
