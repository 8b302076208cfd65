"""What the routes need, built once per API replica: the database, token checks,
chat moderation, segment storage, and access to stream actors."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

from actors import stream_actor
from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.errors import Conflict, Forbidden, LumaError, NotFound, Unavailable
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from lumalive.store import streams, users
from media.storage import LocalStorage, SegmentStorage
from models.moderation import ChatModerator
from serve_app.embeddings import StreamEmbeddings
from serve_app.fanout import EventHub

__all__ = ["Services"]


class Services:
    def __init__(self, settings: Settings) -> None:
        assert settings.jwt_secret, "Settings.with_secret() must run before the API starts"
        self.settings = settings
        self.db = Database(settings)
        self.tokens = TokenService(settings.jwt_secret, settings.jwt_audience)
        self.moderator = ChatModerator(settings.chat_moderation_threshold)
        # Where the media pool stored the HLS segments (the same root on every node).
        self.media: SegmentStorage = LocalStorage(settings.media_root)
        self._actors: dict[UUID, Any] = {}
        self._known_users: set[UUID] = set()
        self._visible: dict[tuple[UUID | None, UUID], tuple[float, dict[str, Any]]] = {}
        # Realtime fan-out (one LISTEN connection, opened on the first subscriber)
        # and stream embeddings for recommendations (model loaded on first use).
        assert settings.database_url
        self.events = EventHub(self.db, settings.database_url, role=settings.app_role)
        self.embeddings = StreamEmbeddings(self.db)

    async def ensure_user(self, user_id: UUID) -> None:
        """A token's subject gets a users row on first sight."""
        if user_id not in self._known_users:
            async with self.db.acting(user_id) as conn:
                await users.ensure_user(conn, user_id)
            self._known_users.add(user_id)

    async def visible_stream(
        self, user_id: UUID | None, stream_id: UUID, fresh: bool = False
    ) -> dict[str, Any]:
        """The stream as the user sees it; NotFound if they may not see it.

        Cached for `visibility_cache_s` on the hot paths (join, chat, react);
        `fresh=True` reads through.
        """
        key = (user_id, stream_id)
        hit = self._visible.get(key)
        if hit and not fresh and time.monotonic() - hit[0] < self.settings.visibility_cache_s:
            return hit[1]
        async with self.db.acting(user_id) as conn:
            row = await streams.get(conn, stream_id)
        if row is None:
            self._visible.pop(key, None)
            raise NotFound("stream not found", "stream_not_found")
        if len(self._visible) > 100_000:
            self._visible.clear()
        self._visible[key] = (time.monotonic(), row)
        return row

    async def owned_stream(self, user_id: UUID, stream_id: UUID) -> dict[str, Any]:
        row = await self.visible_stream(user_id, stream_id, fresh=True)
        if row["user_id"] != user_id:
            raise Forbidden("only the stream's owner may do this", "not_stream_owner")
        return row

    async def live_stream(self, user_id: UUID, stream_id: UUID) -> dict[str, Any]:
        row = await self.visible_stream(user_id, stream_id)
        if row["status"] != StreamStatus.LIVE:  # maybe a stale cache: another replica started it
            row = await self.visible_stream(user_id, stream_id, fresh=True)
        if row["status"] != StreamStatus.LIVE:
            raise Conflict(f"stream is {row['status']}, not live", "stream_not_live")
        return row

    def actor(self, stream: dict[str, Any]) -> Any:
        sid = stream["id"]
        if sid not in self._actors:
            self._actors[sid] = stream_actor.get_or_create(sid, stream["user_id"], self.settings)
        return self._actors[sid]

    async def call(self, stream: dict[str, Any], method: str, *args: Any) -> Any:
        """Call a stream actor; domain errors come back as themselves."""
        handle = self.actor(stream)
        try:
            return await getattr(handle, method).remote(*args)
        except RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, LumaError) else None
            if cause is None:
                raise
            if cause.code == "stream_not_live":  # we reached an actor of an ended stream
                self.forget(stream["id"])
            raise cause from None
        except (ActorDiedError, ActorUnavailableError):
            self._actors.pop(stream["id"], None)
            self.invalidate(stream["id"])
            now = await self.visible_stream(stream["user_id"], stream["id"], fresh=True)
            if (
                now["status"] != StreamStatus.LIVE
            ):  # ended by another replica, which stopped the actor
                raise Conflict(f"stream is {now['status']}, not live", "stream_not_live") from None
            raise Unavailable(
                "the stream's actor is restarting; retry", "stream_restarting"
            ) from None

    def invalidate(self, stream_id: UUID) -> None:
        """Forget cached rows of a stream whose state changed."""
        self._visible = {k: v for k, v in self._visible.items() if k[1] != stream_id}

    def forget(self, stream_id: UUID) -> None:
        """Stop an ended stream's actor and drop what is cached of it."""
        handle = self._actors.pop(stream_id, None)
        if handle is not None:
            stream_actor.stop(handle)
        self.invalidate(stream_id)

    async def close(self) -> None:
        await self.events.close()
        await self.db.dispose()
