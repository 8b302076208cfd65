"""Webhooks: subscriptions, a durable delivery queue (issue 14).

Revision ID: 0007
Revises: 0006
"""

from sql.migrate import run_sql_file

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    run_sql_file("0007_webhooks.sql")
