"""Encode once (issue 10, `actors.encode_once`): a low-latency stream's LL rungs are
encoded by its streaming encoder only; their classic TS segments are its packets
remuxed, and the pool encodes none of them. If the streaming encoder breaks, the pool
takes those rungs back and the classic playlists go on without a hole.

The pipeline runs in process with a real worker in a thread as its pool (the `run`
the ingest injects), real Postgres and storage. The session's ladder is 480p/360p
(conftest caps it at 480p), both at or under `llhls_max_height`: both are LL rungs.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av
import pytest

from actors.media_pipeline import StreamPipeline
from actors.media_worker import SegmentJob, SegmentOutcome, SegmentWorker
from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.store import streams
from media.llhls.live import LiveTranscoder, SourcePacket
from media.object_storage import open_storage
from tests.utils.api import Person
from tests.utils.db import rows_as
from tests.utils.media import ChunkedReader, synthetic

pytestmark = pytest.mark.slow

FPS, GOP, SEGMENTS = 10, 20, 3  # two-second segments


async def _publish(
    settings: Settings, db: Database, owner: Person, stream: dict[str, Any]
) -> tuple[dict[str, Any], list[SegmentJob]]:
    """Publish SEGMENTS segments of 854x480 with audio; the pool's jobs, and the row."""
    async with db.acting(owner.id) as conn:
        row = await streams.get(conn, uuid.UUID(stream["id"]))
    assert row is not None and row["latency_mode"] == "low"
    worker, jobs = SegmentWorker(settings), []

    async def run(job: SegmentJob, data: bytes) -> SegmentOutcome:
        jobs.append(job)
        return SegmentOutcome(await asyncio.to_thread(worker.process, job, data))

    async def end_stream(reason: str) -> None:
        raise AssertionError(f"ended: {reason}")

    source = synthetic(frames=SEGMENTS * GOP, gop=GOP, size=(854, 480), fps=FPS)
    with ThreadPoolExecutor(2) as executor:
        pipeline = StreamPipeline(row, settings, db, run, executor=executor, end_stream=end_stream)
        await pipeline.open()
        await pipeline.ingest(ChunkedReader(source))
        await pipeline.drain()
        await pipeline.close()
    return row, jobs


async def _segments(db: Database, owner: Person, sid: uuid.UUID) -> dict[tuple[str, int], Any]:
    rows = await rows_as(
        db,
        owner.id,
        "SELECT rendition, source_sequence, gap, frames, path, timings"
        " FROM stream_segments WHERE stream_id = :s",
        s=sid,
    )
    return {(r["rendition"], r["source_sequence"]): r for r in rows}


def _decode(settings: Settings, path: str) -> tuple[int, int]:
    """(video frames, audio frames) of a stored TS segment."""
    data = open_storage(settings.media_store_url).get(path)
    with av.open(io.BytesIO(data), format="mpegts") as c:
        video = sum(1 for _ in c.decode(video=0))
    with av.open(io.BytesIO(data), format="mpegts") as c:
        audio = sum(1 for _ in c.decode(audio=0))
    return video, audio


async def test_the_ll_rungs_are_encoded_once_and_stay_classic_ts(
    make_user: Any, make_stream: Any, settings: Settings, db: Database
) -> None:
    assert settings.llhls_encode_once
    owner = await make_user("once")
    stream = await make_stream(owner, start=True)
    row, jobs = await _publish(settings, db, owner, stream)
    # The pool moderated (the lowest rung's job) but encoded no rung at all.
    assert jobs and all(job.renditions == () for job in jobs)
    rows = await _segments(db, owner, row["id"])
    assert sorted(rows) == [(r, n) for r in ("360p", "480p") for n in range(SEGMENTS)]
    for (rendition, n), seg in rows.items():
        assert not seg["gap"] and seg["timings"]["llhls_rungs"] == 1, (rendition, n)
        assert seg["path"].endswith(f"/{rendition}/{n:08d}.ts") and seg["frames"] == GOP
        video, audio = _decode(settings, seg["path"])
        assert video == GOP and audio > 0


async def test_a_broken_streaming_encoder_gives_its_rungs_back_to_the_pool(
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The streaming encoder breaks on the packet that starts segment 2 (fault
    injection: the real encoder raises there, as on any bug): segment 0 was its, the
    next ones are the pool's, and the classic playlists have every segment."""
    push = LiveTranscoder.push

    def breaking(self: LiveTranscoder, p: SourcePacket) -> Any:
        if p.classic == 2:
            raise RuntimeError("injected: the streaming encoder broke")
        return push(self, p)

    monkeypatch.setattr(LiveTranscoder, "push", breaking)
    owner = await make_user("once-broken")
    stream = await make_stream(owner, start=True)
    row, jobs = await _publish(settings, db, owner, stream)
    assert "LL-HLS encoder failed" in caplog.text
    encoded = {(r.name, job.source_sequence) for job in jobs for r in job.renditions}
    assert encoded == {(r, n) for r in ("360p", "480p") for n in (1, 2)}
    rows = await _segments(db, owner, row["id"])
    assert sorted(rows) == [(r, n) for r in ("360p", "480p") for n in range(SEGMENTS)]
    for (rendition, n), seg in rows.items():
        assert not seg["gap"] and seg["frames"] == GOP
        assert seg["timings"].get("llhls_rungs", 0) == (1 if n == 0 else 0), (rendition, n)
        assert _decode(settings, seg["path"])[0] == GOP
