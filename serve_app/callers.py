"""Who is calling: the user an access token names, with a `users` row made on first sight."""

from __future__ import annotations

from uuid import UUID

from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.store import users

__all__ = ["Callers"]


class Callers:
    """One per API replica; remembers which users already have their row."""

    def __init__(self, tokens: TokenService, db: Database) -> None:
        self._tokens = tokens
        self._db = db
        self._known: set[UUID] = set()

    async def identify(self, token: str) -> UUID:
        """The token's user; Unauthorized if the token is forged, expired or malformed.
        A token's subject gets a users row on first sight (Supabase users arrive
        without one)."""
        user_id = self._tokens.verify(token)
        if user_id not in self._known:
            async with self._db.acting(user_id) as conn:
                await users.ensure_user(conn, user_id)
            self._known.add(user_id)
        return user_id
