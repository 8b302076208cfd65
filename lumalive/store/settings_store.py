"""A user's own settings (sql/0006 `user_settings`): for now whether listings show them
NSFW streams. RLS keeps every row to its user; a user without a row has the defaults."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["DEFAULTS", "get", "put"]

DEFAULTS: dict[str, Any] = {"showNSFW": False, "nsfwConfirmedAt": None}

_COLUMNS = 'show_nsfw AS "showNSFW", nsfw_confirmed_at AS "nsfwConfirmedAt"'
_GET = text(f"SELECT {_COLUMNS} FROM user_settings WHERE user_id = app_user_id()")


async def get(conn: AsyncConnection) -> dict[str, Any]:
    """The acting user's settings."""
    row = (
        (
            await conn.execute(
                text(f"SELECT {_COLUMNS} FROM user_settings WHERE user_id = app_user_id()")
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else dict(DEFAULTS)


async def put(conn: AsyncConnection, show_nsfw: bool) -> dict[str, Any]:
    """Set the acting user's NSFW opt-in; turning it on stamps when they confirmed it."""
    row = (
        (
            await conn.execute(
                text(
                    "INSERT INTO user_settings (user_id, show_nsfw, nsfw_confirmed_at)"
                    " VALUES (app_user_id(), :on, CASE WHEN :on THEN now() END)"
                    " ON CONFLICT (user_id) DO UPDATE SET show_nsfw = EXCLUDED.show_nsfw,"
                    " nsfw_confirmed_at = COALESCE(EXCLUDED.nsfw_confirmed_at,"
                    " user_settings.nsfw_confirmed_at), updated_at = now()"
                    f" RETURNING {_COLUMNS}"
                ),
                {"on": show_nsfw},
            )
        )
        .mappings()
        .one()
    )
    return dict(row)
