"""What one API replica builds once, on its first request, inside its serving process
(Serve pickles the app to its replicas, so nothing here may be built at import time).

Routes never see this container: they ask `serve_app.deps` for the one piece
they use (`DbDep`, `GatewayDep`, ...).
"""

from __future__ import annotations

from actors.placement import control_options
from actors.stream_gateway import StreamGateway
from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.settings import Settings
from media.object_storage import open_storage
from media.storage import SegmentStorage
from models.moderation import ChatModerator
from serve_app.callers import Callers
from serve_app.embeddings import StreamEmbeddings
from serve_app.fanout import EventHub
from serve_app.limits import ConnectionLimits, RequestLimits
from serve_app.part_waiter import PartWaiter
from serve_app.stream_access import StreamAccess

__all__ = ["Replica"]


class Replica:
    """The database, token checks, stream access and actors, realtime fan-out, chat
    moderation, segment storage, stream embeddings and rate limits of one API replica."""

    def __init__(self, settings: Settings) -> None:
        assert settings.jwt_secret, "Settings.with_secret() must run before the API starts"
        assert settings.database_url
        self.settings = settings
        self.db = Database(settings)
        self.tokens = TokenService(settings.jwt_secret, settings.jwt_audience)
        self.callers = Callers(self.tokens, self.db, settings.user_cache_s)
        self.access = StreamAccess(self.db, settings.visibility_cache_s)
        self.gateway = StreamGateway(settings, self.access.status, on_change=self.access.invalidate)
        # One LISTEN connection, opened on the first subscriber.
        self.events = EventHub(
            self.db,
            settings.app_url or "",
            role=settings.app_role,
            coalesce_s=settings.fanout_coalesce_ms / 1000,
        )
        self.moderator = ChatModerator(settings.chat_moderation_threshold)
        # Where the media pool stored the HLS segments (LUMALIVE_MEDIA_URL: a directory
        # every node sees, or an object store).
        self.media: SegmentStorage = open_storage(settings.media_store_url)
        # Stream embeddings for recommendations (the model is loaded on first use).
        self.embeddings = StreamEmbeddings(self.db, placement=control_options(settings))
        # Rate limits and realtime connection caps, per replica (`serve_app.limits`).
        self.limits = RequestLimits(settings)
        self.connections = ConnectionLimits(
            settings.max_realtime_per_user, settings.max_realtime_per_ip
        )
        # LL-HLS blocking reloads: one LISTEN connection, opened by the first waiting request.
        self.parts = PartWaiter(settings.app_url or "", role=settings.app_role)

    async def close(self) -> None:
        await self.events.close()
        await self.parts.close()
        await self.db.dispose()
