"""Schema and migrations. The `.sql` files are the source of truth; Alembic
revisions in `versions/` apply them in order. Never edit a shipped file."""
