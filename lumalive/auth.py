"""Access tokens: HS256 JWTs with `sub` = user UUID and a required `exp`.

Compatible with Supabase access tokens (audience `authenticated`), so a
Supabase front end can call the API with the token it already holds.

Playback tokens are a second kind, for HLS players that cannot send headers: they
ride in the query (`?pt=`), name one user and one stream (`sid`), carry
`scope=playback` and their own audience, so neither kind passes for the other.
"""

from __future__ import annotations

import time
from uuid import UUID

import jwt

from lumalive.errors import NotFound, Unauthorized

__all__ = ["TokenService", "PLAYBACK_AUDIENCE"]

PLAYBACK_AUDIENCE = "lumalive-playback"


class TokenService:
    def __init__(self, secret: str, audience: str = "authenticated") -> None:
        self._secret = secret
        self._audience = audience

    def issue(self, user_id: UUID, ttl_s: int = 3600) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "aud": self._audience,
            "role": "authenticated",
            "iat": now,
            "exp": now + ttl_s,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> UUID:
        """The user a token speaks for; Unauthorized if forged, expired or malformed."""
        return self.verify_caller(token)[0]

    def verify_caller(self, token: str) -> tuple[UUID, bool]:
        """As `verify`, and whether the token makes its user a platform moderator:
        `app_metadata.role == "moderator"`, a claim only the issuer (e.g. Supabase, whose
        users cannot edit app_metadata) sets."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=self._audience,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired", "token_expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}", "invalid_token") from None
        try:
            user = UUID(claims["sub"])
        except (ValueError, TypeError):
            raise Unauthorized("token subject is not a user id", "invalid_token") from None
        meta = claims.get("app_metadata")
        return user, isinstance(meta, dict) and meta.get("role") == "moderator"

    def issue_playback(self, user_id: UUID, stream_id: UUID, ttl_s: int) -> str:
        """A token that lets `user_id` fetch `stream_id`'s playlists and segments."""
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "sid": str(stream_id),
            "scope": "playback",
            "aud": PLAYBACK_AUDIENCE,
            "iat": now,
            "exp": now + ttl_s,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify_playback(self, token: str, stream_id: UUID) -> UUID:
        """The user a playback token speaks for. Unauthorized if forged, expired or not
        a playback token; NotFound if it is for another stream (as for a stream the
        caller may not see: a token must not reveal that other streams exist)."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=PLAYBACK_AUDIENCE,
                options={"require": ["exp", "sub", "sid", "scope"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("playback token has expired", "token_expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid playback token: {exc}", "invalid_token") from None
        if claims["scope"] != "playback":
            raise Unauthorized("not a playback token", "invalid_token")
        try:
            user, sid = UUID(claims["sub"]), UUID(claims["sid"])
        except (ValueError, TypeError):
            raise Unauthorized("malformed playback token", "invalid_token") from None
        if sid != stream_id:
            raise NotFound("stream not found", "stream_not_found")
        return user
