"""Recommendations: live streams the caller may see, ranked by their watch history
and current popularity.

    taste      u = normalise( sum over watched streams h of  w_h * e_h )
               w_h = (1 + ln(1 + minutes watched_h)) * 0.5 ** (days since last watched_h / 7)
    relevance  r_s = max(0, e_s . u)                         (cosine: vectors are unit length)
    popularity p_s = ln(1 + viewers_s) / ln(1 + max viewers among the candidates)   (0 if none)
    score      s   = r_s * (1 + 0.5 * p_s)    with a watch history
               s   = p_s                      anonymous, or no history yet

Relevance leads and popularity boosts it by up to half: sentence-embedding
cosines of related streams differ by a few hundredths to a few tenths, so an
additive blend would let any crowd outrank what the caller actually watches.

e_* are sentence embeddings of title, description, tags and category
(`models.embeddings`). Ties go to the stream that started last. The caller's
own streams are left out, and so are NSFW streams unless the caller opted in
(sql/0006 `nsfw_listable`). RLS decides what is a candidate: only streams the
caller may see, and only the caller's own viewings, are ever read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from lumalive.store.streams import COLUMNS

__all__ = [
    "POPULARITY_BOOST",
    "HALF_LIFE_DAYS",
    "candidates",
    "history",
    "store_embedding",
    "taste",
    "rank",
]

POPULARITY_BOOST = 0.5
HALF_LIFE_DAYS = 7.0

_S_COLUMNS = ", ".join(f"s.{c.strip()}" for c in COLUMNS.split(","))


async def candidates(conn: AsyncConnection, *, limit: int) -> list[dict[str, Any]]:
    """Live streams the acting user may see (not their own), most watched first,
    each with its `embedding` (None if not computed yet)."""
    rows = await conn.execute(
        text(
            f"SELECT {_S_COLUMNS}, e.embedding FROM live_streams s"
            " LEFT JOIN stream_embeddings e ON e.stream_id = s.id"
            " WHERE s.is_live AND s.user_id IS DISTINCT FROM app_user_id()"
            " AND nsfw_listable(s.is_nsfw, s.id, s.user_id)"
            " ORDER BY s.viewers DESC, s.started_at DESC, s.id LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [dict(r) for r in rows.mappings()]


async def history(conn: AsyncConnection, user_id: UUID, *, limit: int = 50) -> list[dict[str, Any]]:
    """The streams a user watched, most recent first, with seconds watched (open
    viewings count up to now) and when they last joined."""
    rows = await conn.execute(
        text(
            "SELECT s.id, s.user_id, s.title, s.description, s.tags, s.category, e.embedding,"
            " h.watch_seconds, h.last_joined FROM ("
            "   SELECT stream_id, max(joined_at) AS last_joined, sum(COALESCE(watch_duration,"
            "          extract(epoch FROM now() - joined_at)))::float8 AS watch_seconds"
            "   FROM live_stream_viewers WHERE user_id = :u GROUP BY stream_id"
            "   ORDER BY last_joined DESC LIMIT :limit) h"
            " JOIN live_streams s ON s.id = h.stream_id"
            " LEFT JOIN stream_embeddings e ON e.stream_id = s.id ORDER BY h.last_joined DESC"
        ),
        {"u": user_id, "limit": limit},
    )
    return [dict(r) for r in rows.mappings()]


async def store_embedding(
    conn: AsyncConnection, stream_id: UUID, model: str, vector: Sequence[float]
) -> bool:
    """Keep a stream's embedding (first one wins); False if it already had one."""
    return bool(
        (
            await conn.execute(
                text("SELECT store_stream_embedding(:s, :m, CAST(:v AS real[]))"),
                {"s": stream_id, "m": model, "v": list(vector)},
            )
        ).scalar()
    )


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.dot(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))


def taste(watched: list[dict[str, Any]], now: datetime | None = None) -> list[float] | None:
    """The unit taste vector of a watch history (rows of `history` with embeddings)."""
    now = now or datetime.now(UTC)
    acc: np.ndarray | None = None
    for h in watched:
        if h.get("embedding") is None:
            continue
        days = max(0.0, (now - h["last_joined"]).total_seconds() / 86_400)
        minutes = max(0.0, float(h["watch_seconds"] or 0)) / 60
        w = (1 + math.log1p(minutes)) * 0.5 ** (days / HALF_LIFE_DAYS)
        vec = w * np.asarray(h["embedding"], dtype=np.float64)
        acc = vec if acc is None else acc + vec
    if acc is None:
        return None
    norm = float(np.linalg.norm(acc))
    return (acc / norm).tolist() if norm > 0 else None


def rank(streams: list[dict[str, Any]], taste_vector: list[float] | None) -> list[dict[str, Any]]:
    """Candidates with `score`, `relevance` and `popularity`, best first (see module)."""
    top = max((s["viewers"] for s in streams), default=0)
    ranked = []
    for s in streams:
        popularity = math.log1p(s["viewers"]) / math.log1p(top) if top > 0 else 0.0
        if taste_vector is None:
            relevance, score = None, popularity
        else:
            emb = s.get("embedding")
            relevance = max(0.0, _dot(emb, taste_vector)) if emb is not None else 0.0
            score = relevance * (1 + POPULARITY_BOOST * popularity)
        ranked.append(
            {
                **{k: v for k, v in s.items() if k != "embedding"},
                "score": round(score, 6),
                "popularity": round(popularity, 6),
                "relevance": None if relevance is None else round(relevance, 6),
            }
        )
    epoch = datetime.min.replace(tzinfo=UTC)
    ranked.sort(key=lambda r: (r["score"], r["started_at"] or epoch), reverse=True)
    return ranked
