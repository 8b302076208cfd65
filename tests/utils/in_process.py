"""The API app and the segment path run in the test's own process against the
session's Postgres, for tests whose settings differ from the session system's (a
bucket as the segment store: tests/system/test_object_storage.py,
test_segment_range.py). They need the same app client and the same one-segment
publish, so both live here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx

from actors.media_worker import SegmentJob, SegmentOutcome, SegmentResult, SegmentWorker
from actors.segment_publisher import Cut, SegmentPublisher, Verdict
from lumalive.db import Database
from lumalive.settings import Settings
from media.segmenter import SourceSegment
from serve_app.app import create_app
from tests.utils.api import Person

__all__ = ["api_client", "publish_segment"]


async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app `lumalive up` serves, built from `settings`, as an in-process client
    (`async for c in api_client(s): yield c` in a fixture); its replica is closed after."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c
    if app.state.replica is not None:
        await app.state.replica.close()


async def publish_segment(
    stream: dict[str, Any],
    owner: Person,
    settings: Settings,
    db: Database,
    source: SourceSegment,
    *,
    cut_s_ago: float,
) -> tuple[SegmentResult, Verdict | None]:
    """`source` as segment 0 of `stream`: encoded by a real worker into the store
    `settings` name, and recorded by the real publisher (cut `cut_s_ago` seconds ago).
    The worker's result (asserted error-free) and the publisher's verdict."""
    row = {**stream, "id": UUID(stream["id"]), "user_id": owner.id}
    publisher = SegmentPublisher(row, settings, db, on_not_live=lambda: None)
    job = SegmentJob(stream["id"], 0, publisher.ladder(source), source.frames, 0)
    result = SegmentWorker(settings).process(job, source.data)
    assert result.error is None
    now = time.time()
    return result, await publisher.publish(
        Cut(source, now, now - cut_s_ago), SegmentOutcome(result)
    )
