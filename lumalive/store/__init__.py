"""Repositories: functions that take an open connection (already bound to an
acting user by `Database.acting`) and never commit; the caller owns the
transaction. RLS decides visibility, so a missing row means "not visible"."""
