"""Reading Postgres in system tests as a given user: the rows RLS lets them see."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import text

from lumalive.db import Database

__all__ = ["rows_as"]


async def rows_as(
    db: Database, user_id: UUID | str, sql: str, **params: Any
) -> list[dict[str, Any]]:
    """`sql` run as `user_id` (row-level security applies as to them), rows as dicts."""
    async with db.acting(user_id) as conn:
        result = await conn.execute(text(sql), params)
        return [dict(r) for r in result.mappings()]
