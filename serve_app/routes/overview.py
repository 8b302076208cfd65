"""Analytics overview of the caller's own streams, from the batch job's rollups
(`lumalive analytics run`); RLS keeps every row to the streams the caller owns."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from lumalive.errors import Unprocessable
from lumalive.store import rollups
from serve_app.deps import CurrentUser, DbDep
from serve_app.responses import ERRORS, Overview

router = APIRouter(prefix="/api/analytics", tags=["analytics"], responses=ERRORS)


@router.get("/overview", response_model=Overview)
async def overview(
    user: CurrentUser,
    db: DbDep,
    since: Annotated[date | None, Query(description="first UTC day (default: 30 days ago)")] = None,
    until: Annotated[date | None, Query(description="last UTC day (default: today)")] = None,
) -> dict[str, Any]:
    """Totals, one row per day, one per stream and one per category and quality
    tier. Figures are as of the last analytics run (`computed_at`). Unique
    viewers are counted per day, so sums over days are `viewer_days`."""
    until = until or datetime.now(UTC).date()
    # 30 days before, or the first day there is (until=0001-01-01 has no 30 days before)
    since = since or date.fromordinal(max(1, until.toordinal() - 30))
    if since > until:
        raise Unprocessable("since must not be after until", "invalid_range")
    async with db.acting(user) as conn:
        return await rollups.overview(conn, since=since, until=until)
