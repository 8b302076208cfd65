"""Who is calling: the user an access token names, with a `users` row made on first sight.

A token outlives its account until it expires. A deleted user's id is remembered
in Postgres (sql/0004), so their token is refused with 401 `user_deleted` rather
than bringing the account back as an empty one: deleting a user (an operator's
ban, a person erasing their account) must stick, and a client that gets 401 signs
in again, which a deleted account cannot. Each replica re-checks a user at most
every `user_cache_s`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.errors import Unauthorized
from lumalive.store import users

__all__ = ["Callers"]


class Callers:
    """One per API replica; remembers when it last saw each user's row."""

    def __init__(
        self,
        tokens: TokenService,
        db: Database,
        cache_s: float = 5.0,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = tokens
        self._db = db
        self._cache_s = cache_s
        self._max_entries = max_entries
        self._clock = clock
        self._checked: dict[UUID, float] = {}

    async def identify(self, token: str) -> UUID:
        """The token's user; Unauthorized if the token is forged, expired or malformed,
        or its user was deleted. A token's subject gets a users row on first sight
        (Supabase users arrive without one)."""
        user_id = self._tokens.verify(token)
        now = self._clock()
        checked = self._checked.get(user_id)
        if checked is None or now - checked >= self._cache_s:
            async with self._db.acting(user_id) as conn:
                exists = await users.ensure_user(conn, user_id)
            if not exists:
                self._checked.pop(user_id, None)
                raise Unauthorized("this account has been deleted", "user_deleted")
            if len(self._checked) >= self._max_entries:
                self._checked.clear()
            self._checked[user_id] = now
        return user_id
