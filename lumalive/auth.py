"""Access tokens: HS256 JWTs with `sub` = user UUID and a required `exp`.

Compatible with Supabase access tokens (audience `authenticated`), so a
Supabase front end can call the API with the token it already holds.
"""

from __future__ import annotations

import time
from uuid import UUID

import jwt

from lumalive.errors import Unauthorized

__all__ = ["TokenService"]


class TokenService:
    def __init__(self, secret: str, audience: str = "authenticated") -> None:
        self._secret = secret
        self._audience = audience

    def issue(self, user_id: UUID, ttl_s: int = 3600) -> str:
        now = int(time.time())
        claims = {"sub": str(user_id), "aud": self._audience, "role": "authenticated",
                  "iat": now, "exp": now + ttl_s}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> UUID:
        """The user a token speaks for; Unauthorized if forged, expired or malformed."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"],
                                audience=self._audience, options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired", "token_expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}", "invalid_token") from None
        try:
            return UUID(claims["sub"])
        except (ValueError, TypeError):
            raise Unauthorized("token subject is not a user id", "invalid_token") from None
