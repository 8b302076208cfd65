"""Stream embeddings for recommendations: computed by the embedding model (in its Ray
actor when Ray runs, else in a thread) and kept in `stream_embeddings`, once per stream."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

from lumalive.db import Database
from lumalive.store import recommend
from models.embeddings import MODEL_NAME, Encoder, local_encoder, stream_text

__all__ = ["StreamEmbeddings"]

log = logging.getLogger(__name__)


class StreamEmbeddings:
    """Computes and stores streams' embeddings; one per API replica.

    `schedule` is for stream creation (off the request's path, batched);
    `ensure` fills in what is missing when a reader needs it now.
    """

    def __init__(
        self, db: Database, encoder: Encoder | None = None, placement: dict[str, Any] | None = None
    ) -> None:
        self._db = db
        self._encode = encoder or _default_encoder(placement)
        self._pending: dict[UUID, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None

    def schedule(self, stream: dict[str, Any]) -> None:
        """Embed a new stream soon, acting as its owner."""
        self._pending[stream["id"]] = stream
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            batch = [self._pending.pop(k) for k in list(self._pending)[:64]]
            try:
                vectors = await self._encode([stream_text(s) for s in batch])
                for stream, vec in zip(batch, vectors, strict=True):
                    async with self._db.acting(stream["user_id"]) as conn:
                        await recommend.store_embedding(conn, stream["id"], MODEL_NAME, vec)
            except Exception:  # noqa: BLE001 - readers fill it in later (`ensure`)
                log.warning("embedding %d new streams failed", len(batch), exc_info=True)

    async def ensure(
        self, actor: UUID | None, streams: list[dict[str, Any]]
    ) -> dict[UUID, list[float]]:
        """Vectors for streams that have none yet (rows with `embedding` None),
        computed now and stored as `actor`, who may see them."""
        missing = list({s["id"]: s for s in streams if s.get("embedding") is None}.values())
        if not missing:
            return {}
        vectors = await self._encode([stream_text(s) for s in missing])
        async with self._db.acting(actor) as conn:
            for stream, vec in zip(missing, vectors, strict=True):
                await recommend.store_embedding(conn, stream["id"], MODEL_NAME, vec)
        return {s["id"]: v for s, v in zip(missing, vectors, strict=True)}


def _default_encoder(placement: dict[str, Any] | None) -> Encoder:
    import ray

    from actors.embedder import ray_encoder

    return ray_encoder(placement) if ray.is_initialized() else local_encoder()
