"""Backpressure in the running system: a publisher floods the ingest with segments
faster than the session's pool (`media_workers` one-segment-at-a-time workers) can
encode them, the stream sheds its top rung instead of falling behind without bound,
every segment is still published in the lowest rung, the shed rung's playlist marks
the holes with EXT-X-GAP, and a later publish at real time restores the top rung. A
slow top rung does not hold the lowest rung back (it is published apart:
`actors.lowest_first`), and a level change whose publish failed is not lost.

The ladder is the session's 480p/360p (conftest caps it at 480p): the 480p rung is the
one to shed (no AI rungs), 360p is never shed. The overload is real work, no sleeps:
16 two-second segments sent unpaced arrive within a second.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from actors.lowest_first import split_lowest
from actors.media_pipeline import StreamPipeline
from actors.media_worker import SegmentJob, SegmentOutcome, SegmentWorker
from actors.segment_pool import WorkerDied
from actors.segment_publisher import Cut, SegmentPublisher
from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.store import streams
from media.segmenter import Segmenter
from tests.utils.api import Person
from tests.utils.db import rows_as
from tests.utils.media import ChunkedReader, synthetic

pytestmark = pytest.mark.slow

FPS, GOP = 10, 20  # two-second segments
FLOOD, PACED = 16, 8  # segments; restoring takes 4 calm segments (restore_segments)
TIMEOUT_S = 90.0


async def _publish(settings: Settings, key: str, source: Path, *, realtime: bool) -> None:
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"]
    args += ["-re"] if realtime else []
    args += ["-i", str(source), "-c", "copy", "-f", "flv"]
    args += [f"rtmp://127.0.0.1:{settings.rtmp_port}/live/{key}"]
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        _, err = await process.communicate()
    assert process.returncode == 0, err.decode(errors="replace")


async def _eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while not (value := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)
    return value


async def _quality(db: Database, owner: Person, sid: str) -> list[dict[str, Any]]:
    return await rows_as(
        db,
        owner.id,
        "SELECT source_sequence, dropped, quality_level, shed FROM stream_quality"
        " WHERE stream_id = :s ORDER BY source_sequence",
        s=sid,
    )


async def _processed(db: Database, owner: Person, sid: str, n: int) -> list[dict[str, Any]]:
    async def done() -> list[dict[str, Any]] | None:
        q = await _quality(db, owner, sid)
        return q if len(q) >= n else None

    return await _eventually(done, f"{n} processed segments")  # type: ignore[no-any-return]


def _entries(playlist: str) -> list[tuple[bool, float, str]]:
    """(gap, EXTINF duration, URI) per segment; checks each tag sits where it must."""
    lines = playlist.splitlines()
    assert lines[0] == "#EXTM3U" and lines[-1] == "#EXT-X-ENDLIST"
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", playlist)[1])  # type: ignore[index]
    assert "#EXT-X-MEDIA-SEQUENCE:0" in lines
    out = []
    for i, line in enumerate(lines):
        if line.startswith("#EXTINF:"):
            uri = lines[i + 1]
            assert not uri.startswith("#"), f"EXTINF without a URI at line {i}"
            duration = float(line[len("#EXTINF:") :].rstrip(","))
            assert round(duration) <= target
            out.append((lines[i - 1] == "#EXT-X-GAP", duration, uri))
    assert playlist.count("#EXT-X-GAP") == sum(gap for gap, _, _ in out)
    return out


async def test_a_flood_sheds_the_top_rung_and_the_lowest_misses_nothing(
    client: httpx.AsyncClient,
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    db: Database,
    tokens: TokenService,
    tmp_path: Path,
) -> None:
    owner = await make_user("flooder")
    r = await client.post(
        "/api/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["stream.quality_degraded"]},
        headers=owner.auth,
    )
    assert r.status_code == 201, r.text
    hook = r.json()["id"]
    # The classic ladder alone, all of it on the pool: in latency mode `low` the
    # streaming encoder carries these rungs (`actors.encode_once`), not the pool.
    stream = await make_stream(owner, latencyMode="normal")
    sid = stream["id"]
    # MP4 (ffmpeg interleaves it into FLV as it publishes), with audio.
    flood, paced = tmp_path / "flood.mp4", tmp_path / "paced.mp4"
    for path, n in ((flood, FLOOD), (paced, PACED)):
        path.write_bytes(synthetic(fmt="mp4", frames=n * GOP, gop=GOP, size=(854, 480), fps=FPS))

    await _publish(settings, stream["stream_key"], flood, realtime=False)
    q = await _processed(db, owner, sid, FLOOD)
    assert not any(x["dropped"] for x in q)
    shed = [x["source_sequence"] for x in q if x["quality_level"] > 0]
    assert shed, "nothing was shed under a flood"
    assert all(x["shed"] == ["480p"] for x in q if x["quality_level"] > 0)
    # All segments arrive at once: from segment `media_workers` on, each has to wait
    # for a worker; shedding starts within two segments of that.
    assert shed[0] <= settings.media_workers + 2, shed

    # The pool has caught up; a publish at real time gets the top rung back.
    await _publish(settings, stream["stream_key"], paced, realtime=True)
    q = await _processed(db, owner, sid, FLOOD + PACED)
    assert q[-1]["quality_level"] == 0 and q[-1]["shed"] == []
    # Shed from the flood until the pool had been calm for the restore hold.
    shed = [x["source_sequence"] for x in q if x["quality_level"] > 0]
    assert shed == list(range(shed[0], shed[-1] + 1)) and shed[-1] >= FLOOD

    r = await client.get(
        f"/api/live-streaming/{sid}/events",
        headers=owner.auth,
        params={"type": "quality_degraded"},
    )
    events = [e["data"] for e in r.json()["items"]]
    assert [(e["action"], e["level"], e["shed"]) for e in events] == [
        ("degraded", 1, ["480p"]),
        ("restored", 0, []),
    ]
    assert events[0]["sourceSequence"] == shed[0] and events[0]["waiting"] >= 1
    assert events[1]["sourceSequence"] == shed[-1] + 1

    async def delivered() -> set[str]:
        r = await client.get(f"/api/webhooks/{hook}/deliveries", headers=owner.auth)
        deliveries = r.json()["deliveries"]
        assert all(d["event_type"] == "stream.quality_degraded" for d in deliveries)
        return {d["payload"]["data"]["action"] for d in deliveries}

    # Enqueued with the events by the trigger of sql/0007 (the receiver is down: pending).
    assert await _eventually(delivered, "the webhook deliveries") == {"degraded", "restored"}

    r = await client.post(f"/api/live-streaming/end/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text
    pt = tokens.issue_playback(owner.id, uuid.UUID(sid), 600)
    base = f"{settings.api_url}/api/live-streaming/{sid}/hls"
    low = _entries((await client.get(f"{base}/360p/index.m3u8", params={"pt": pt})).text)
    top = _entries((await client.get(f"{base}/480p/index.m3u8", params={"pt": pt})).text)
    # The lowest rung: every segment, none a gap. The top: the same numbering, and a
    # gap exactly where it was shed.
    assert len(low) == len(top) == FLOOD + PACED
    assert not any(gap for gap, _, _ in low)
    assert [i for i, (gap, _, _) in enumerate(top) if gap] == shed
    assert [uri.split("?")[0] for _, _, uri in low] == [uri.split("?")[0] for _, _, uri in top]
    gap_uri = top[shed[0]][2]
    assert (await client.get(f"{base}/480p/{gap_uri}")).status_code == 404
    # The lowest rung plays back whole.
    with av.open(f"{base}/360p/index.m3u8?pt={pt}", timeout=30) as hls:
        frames = sum(1 for p in hls.demux(hls.streams.video) for _ in p.decode())
    assert frames == (FLOOD + PACED) * GOP


async def _segment_rows(db: Database, owner: Person, sid: uuid.UUID) -> list[dict[str, Any]]:
    return await rows_as(
        db,
        owner.id,
        "SELECT rendition, sequence, source_sequence, gap, bytes, path, timings, created_at"
        " FROM stream_segments WHERE stream_id = :s ORDER BY sequence, rendition",
        s=sid,
    )


async def _stream_row(db: Database, owner: Person, stream: dict[str, Any]) -> dict[str, Any]:
    async with db.acting(owner.id) as conn:
        row = await streams.get(conn, uuid.UUID(stream["id"]))
    assert row is not None
    return row


async def test_a_slow_top_rung_does_not_hold_the_lowest_rung_back(
    make_user: Any, make_stream: Any, settings: Settings, db: Database, tmp_path: Path
) -> None:
    """The pipeline with a real worker in a thread as its pool (the `run` the ingest
    injects). Each segment's top-rung job holds until its lowest rung is in the
    playlist table: were a segment published only whole, it would wait forever (here:
    fail after 15 s). Segment 1's top-rung job then dies like a worker that kept dying:
    its 480p row is a gap, its 360p row is not."""
    owner = await make_user("apart")
    stream = await make_stream(owner, start=True, latencyMode="normal")
    row = await _stream_row(db, owner, stream)
    source = tmp_path / "three.flv"
    source.write_bytes(synthetic(frames=3 * GOP, gop=GOP, size=(854, 480), fps=FPS))
    worker = SegmentWorker(settings)

    async def lowest_out(sequence: int) -> bool:
        rows = await _segment_rows(db, owner, row["id"])
        return any(r["rendition"] == "360p" and r["source_sequence"] == sequence for r in rows)

    async def run(job: SegmentJob, data: bytes) -> SegmentOutcome:
        if "360p" not in {r.name for r in job.renditions}:  # the top rung's job
            async with asyncio.timeout(15):
                while not await lowest_out(job.source_sequence):
                    await asyncio.sleep(0.1)
            if job.source_sequence == 1:
                raise WorkerDied("the top rung's worker kept dying")
        return SegmentOutcome(await asyncio.to_thread(worker.process, job, data))

    async def end_stream(reason: str) -> None:
        raise AssertionError(f"ended: {reason}")

    with ThreadPoolExecutor(2) as executor:
        pipeline = StreamPipeline(row, settings, db, run, executor=executor, end_stream=end_stream)
        await pipeline.open()
        with source.open("rb") as f:
            await pipeline.ingest(f)
        await pipeline.drain()
        await pipeline.close()

    rows = await _segment_rows(db, owner, row["id"])
    by = {(r["rendition"], r["sequence"]): r for r in rows}
    assert sorted(by) == [(name, n) for name in ("360p", "480p") for n in range(3)]
    assert not any(by["360p", n]["gap"] for n in range(3))
    assert [by["480p", n]["gap"] for n in range(3)] == [False, True, False]
    for n in range(3):  # each in its own transaction, the lowest first
        assert by["360p", n]["created_at"] < by["480p", n]["created_at"]
        assert by["360p", n]["source_sequence"] == by["480p", n]["source_sequence"] == n


async def test_a_level_change_whose_publish_failed_is_written_by_the_next(
    client: httpx.AsyncClient,
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    db: Database,
) -> None:
    """A publish whose transaction fails (here: a quality row the CHECK of sql/0013
    refuses) loses its segment, not the `quality_degraded` event it carried."""
    owner = await make_user("durable")
    row = await _stream_row(db, owner, await make_stream(owner, start=True))
    data = synthetic(frames=2 * GOP, gop=GOP, size=(320, 240), fps=FPS)
    segments = list(Segmenter(ChunkedReader(data), format="flv"))
    publisher = SegmentPublisher(row, settings, db, on_not_live=lambda: None)
    worker = SegmentWorker(settings)
    change = {"action": "degraded", "level": 1, "source_sequence": 0}
    outcomes = []
    for seg in segments:
        job = SegmentJob(str(row["id"]), seg.sequence, publisher.ladder(seg), seg.frames, 0)
        outcomes.append(SegmentOutcome(worker.process(job, seg.data)))
    now = time.time()
    bad = Cut(segments[0], now, now, level=-1, quality_change=change)
    with pytest.raises(Exception, match="quality_level"):
        await publisher.publish(bad, outcomes[0])
    await publisher.lost(bad, outcomes[0])
    assert await publisher.publish(Cut(segments[1], now, now, level=1), outcomes[1])
    r = await client.get(
        f"/api/live-streaming/{row['id']}/events",
        headers=owner.auth,
        params={"type": "quality_degraded"},
    )
    assert [e["data"] for e in r.json()["items"]] == [
        {"action": "degraded", "level": 1, "sourceSequence": 0}
    ]


async def test_upper_rungs_a_restart_left_unpublished_become_gaps(
    make_user: Any, make_stream: Any, settings: Settings, db: Database
) -> None:
    """A segment published in its lowest rung whose upper rung never followed (the
    ingest restarted in between): the next pipeline of the stream gaps it on open, so
    both rungs keep the same media sequence numbers."""
    owner = await make_user("restart")
    row = await _stream_row(db, owner, await make_stream(owner, start=True, latencyMode="normal"))
    data = synthetic(frames=GOP, gop=GOP, size=(854, 480), fps=FPS)
    [seg] = Segmenter(ChunkedReader(data), format="flv")
    publisher = SegmentPublisher(row, settings, db, on_not_live=lambda: None)
    job = SegmentJob(str(row["id"]), 0, publisher.ladder(seg), seg.frames, 0)
    first, rest = split_lowest(job, 2.0)
    assert rest is not None and [r.name for r in rest.renditions] == ["480p"]
    result = SegmentWorker(settings).process(first, seg.data)
    now = time.time()
    assert await publisher.publish(Cut(seg, now, now), SegmentOutcome(result), ("480p",))
    assert [(r["rendition"], r["gap"]) for r in await _segment_rows(db, owner, row["id"])] == [
        ("360p", False)
    ]

    async def end_stream(reason: str) -> None:
        raise AssertionError(f"ended: {reason}")

    with ThreadPoolExecutor(1) as executor:
        pipeline = StreamPipeline(
            row, settings, db, lambda *_: None, executor=executor, end_stream=end_stream
        )
        await pipeline.open()
        await pipeline.close()
    rows = await _segment_rows(db, owner, row["id"])
    assert [(r["rendition"], r["sequence"], r["gap"]) for r in rows] == [
        ("360p", 0, False),
        ("480p", 0, True),
    ]


async def test_upper_rungs_pending_when_the_stream_ends_become_gaps(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings, db: Database
) -> None:
    """A segment published in its lowest rung whose upper rung had not followed when
    the owner ended the stream (the ingest's drain timed out): the end gaps it in its
    transaction, and the upper rung's job finishing afterwards writes nothing."""
    owner = await make_user("ended")
    row = await _stream_row(db, owner, await make_stream(owner, start=True, latencyMode="normal"))
    data = synthetic(frames=GOP, gop=GOP, size=(854, 480), fps=FPS)
    [seg] = Segmenter(ChunkedReader(data), format="flv")
    not_live: list[bool] = []
    publisher = SegmentPublisher(row, settings, db, on_not_live=lambda: not_live.append(True))
    job = SegmentJob(str(row["id"]), 0, publisher.ladder(seg), seg.frames, 0)
    first, rest = split_lowest(job, 2.0)
    assert rest is not None and [r.name for r in rest.renditions] == ["480p"]
    worker = SegmentWorker(settings)
    cut = Cut(seg, time.time(), time.time())
    assert await publisher.publish(cut, SegmentOutcome(worker.process(first, seg.data)), ("480p",))
    [lowest] = await _segment_rows(db, owner, row["id"])

    r = await client.post(f"/api/live-streaming/end/{row['id']}", headers=owner.auth)
    assert r.status_code == 200, r.text
    ended = await _segment_rows(db, owner, row["id"])
    assert [(r["rendition"], r["sequence"], r["gap"]) for r in ended] == [
        ("360p", 0, False),
        ("480p", 0, True),
    ]
    assert ended[0] == lowest
    assert ended[1]["timings"] == {"error": "not published before the stream ended"}
    # The upper rung's job ends after the stream did: its rows are not written.
    await publisher.publish_rest(cut, SegmentOutcome(worker.process(rest, seg.data)))
    assert not_live and await _segment_rows(db, owner, row["id"]) == ended
