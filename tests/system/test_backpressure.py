"""Backpressure in the running system: a publisher floods the ingest with segments
faster than the session's pool (`media_workers` one-segment-at-a-time workers) can
encode them, the stream sheds its top rung instead of falling behind without bound,
every segment is still published in the lowest rung, the shed rung's playlist marks
the holes with EXT-X-GAP, and a later publish at real time restores the top rung.

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
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from sqlalchemy import text

from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.settings import Settings
from tests.utils.api import Person
from tests.utils.media import synthetic

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
    async with db.acting(owner.id) as conn:
        rows = await conn.execute(
            text(
                "SELECT source_sequence, dropped, quality_level, shed FROM stream_quality"
                " WHERE stream_id = :s ORDER BY source_sequence"
            ),
            {"s": sid},
        )
        return [dict(r) for r in rows.mappings()]


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
    stream = await make_stream(owner)
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
