"""Recommended live streams for the caller (ranking in `lumalive.store.recommend`).

Mounted before the stream routes, so `/api/live-streaming/recommended` is not
taken for a stream id.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from lumalive.store import recommend
from serve_app.deps import DbDep, EmbeddingsDep, Limit, MaybeUser
from serve_app.responses import ERRORS, RecommendedPage

router = APIRouter(prefix="/api/live-streaming", tags=["streams"], responses=ERRORS)

# Candidates considered per request: the most watched live streams the caller may see.
CANDIDATES = 500


@router.get("/recommended", response_model=RecommendedPage)
async def recommended(
    user: MaybeUser, db: DbDep, embeddings: EmbeddingsDep, limit: Limit = 20
) -> dict[str, Any]:
    """Live streams ranked by relevance to the caller's watch history blended with
    current popularity; anonymous callers (or callers without history) get popularity.
    Each item is a stream with `score`, `relevance` (null without history) and `popularity`."""
    async with db.acting(user) as conn:
        streams = await recommend.candidates(conn, limit=CANDIDATES)
        watched = await recommend.history(conn, user) if user is not None else []
    taste = None
    if watched:
        # Embeddings are made when a stream is created; older ones are filled in here.
        filled = await embeddings.ensure(user, streams + watched)
        for row in streams + watched:
            if row["embedding"] is None:
                row["embedding"] = filled.get(row["id"])
        taste = recommend.taste(watched)
    items = recommend.rank(streams, taste)[:limit]
    return {"items": items, "personalised": taste is not None}
