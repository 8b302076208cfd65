"""Ending a stream hangs up on its RTMP publisher, in the running system: a real ffmpeg
publishing an endless source exits soon after its owner ends the stream, or after a
platform moderator resolves a report on it with `end_stream` or `suspend`, and the VOD
keeps every segment published before the end."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text

from lumalive.db import Database
from lumalive.settings import Settings
from tests.utils.api import BASE, Person, assert_error
from tests.utils.media import MEDIA

pytestmark = pytest.mark.slow

CLIP = MEDIA / "bigbuckbunny.mp4"  # one keyframe: each loop of it is one source segment
EXIT_S = 5.0  # how soon after the end the publisher must be gone


async def publish_forever(settings: Settings, key: str) -> asyncio.subprocess.Process:
    """The ffmpeg CLI re-publishing the clip in a loop, paced as a camera: it only stops
    when the server hangs up."""
    return await asyncio.create_subprocess_exec(
        *("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"),
        *("-re", "-stream_loop", "-1", "-i", str(CLIP), "-c", "copy", "-f", "flv"),
        f"rtmp://127.0.0.1:{settings.rtmp_port}/live/{key}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def exits_within(process: asyncio.subprocess.Process, timeout_s: float) -> str:
    """ffmpeg's stderr once it exited; fails (and kills it) if it is still running."""
    try:
        async with asyncio.timeout(timeout_s):
            _, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"the publisher still ran {timeout_s} s after the end") from None
    return stderr.decode(errors="replace")


async def segments(db: Database, owner: Person, sid: str) -> set[tuple[str, int]]:
    async with db.acting(owner.id) as conn:
        result = await conn.execute(
            text("SELECT rendition, sequence FROM stream_segments WHERE stream_id = :s"),
            {"s": sid},
        )
        return {(r.rendition, r.sequence) for r in result}


async def publishing(
    client: httpx.AsyncClient, db: Database, settings: Settings, owner: Person, stream: dict
) -> tuple[asyncio.subprocess.Process, set[tuple[str, int]]]:
    """ffmpeg publishing the stream, once its first source segment is in the playlists:
    the publisher and the segments published so far."""
    publisher = await publish_forever(settings, stream["stream_key"])
    deadline = time.monotonic() + 120
    while not (published := await segments(db, owner, stream["id"])):
        assert publisher.returncode is None, "ffmpeg stopped on its own"
        assert time.monotonic() < deadline, "no segment was published"
        await asyncio.sleep(0.3)
    r = await client.get(f"{BASE}/{stream['id']}", headers=owner.auth)
    assert r.json()["status"] == "live"
    return publisher, published


async def disconnect_reasons(client: httpx.AsyncClient, owner: Person, sid: str) -> list[str]:
    """Why the publishes of the stream ended, once one did (the ingest records it)."""
    deadline = time.monotonic() + 10
    while True:
        r = await client.get(
            f"{BASE}/{sid}/events", params={"type": "ingest_disconnected"}, headers=owner.auth
        )
        reasons = [e["data"]["reason"] for e in r.json()["items"]]
        if reasons or time.monotonic() > deadline:
            return reasons
        await asyncio.sleep(0.2)


async def test_owner_ending_the_stream_hangs_up_on_ffmpeg(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings, db: Database
) -> None:
    owner = await make_user("caster")
    stream = await make_stream(owner)
    sid = stream["id"]
    publisher, before = await publishing(client, db, settings, owner, stream)

    r = await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text
    assert r.json()["end_reason"] == "ended_by_owner"
    began = time.monotonic()
    stderr = await exits_within(publisher, EXIT_S)
    print(f"ffmpeg exited {time.monotonic() - began:.2f} s after End answered")

    assert publisher.returncode != 0 and "the stream has ended" in stderr, stderr
    after = await segments(db, owner, sid)
    assert before <= after  # the VOD: what was published, and the drained last segment
    for rendition in {rendition for rendition, _ in before}:
        index = await client.get(f"{BASE}/{sid}/hls/{rendition}/index.m3u8", headers=owner.auth)
        assert index.status_code == 200, index.text
        assert "#EXT-X-ENDLIST" in index.text
    assert await disconnect_reasons(client, owner, sid) == ["stream_ended"]


@pytest.mark.parametrize("action", ["end_stream", "suspend"])
async def test_a_moderator_ending_the_stream_hangs_up_on_ffmpeg(
    client: httpx.AsyncClient,
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    db: Database,
    action: str,
) -> None:
    owner, viewer, pmod = [await make_user(p) for p in ("caster", "viewer", "pmod")]
    dsn = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:  # the platform's operator
        await conn.execute("INSERT INTO platform_moderators (user_id) VALUES (%s)", (pmod.id,))
    stream = await make_stream(owner)
    sid = stream["id"]
    publisher, before = await publishing(client, db, settings, owner, stream)
    r = await client.post(f"{BASE}/{sid}/report", json={"reason": "violence"}, headers=viewer.auth)
    assert r.status_code == 201, r.text

    r = await client.post(
        f"/api/moderation/reports/{r.json()['id']}/resolve",
        json={"action": action},
        headers=pmod.auth,
    )
    assert r.status_code == 200, r.text
    began = time.monotonic()
    stderr = await exits_within(publisher, EXIT_S)
    print(f"ffmpeg exited {time.monotonic() - began:.2f} s after {action} answered")

    assert publisher.returncode != 0 and "the stream has ended" in stderr, stderr
    s = (await client.get(f"{BASE}/{sid}", headers=owner.auth)).json()
    assert s["status"] == "ended" and s["end_reason"] == "policy_violation"
    assert before <= await segments(db, owner, sid)  # the VOD, kept for its owner
    master = f"{BASE}/{sid}/hls/master.m3u8"
    assert (await client.get(master, headers=owner.auth)).status_code == 200
    assert_error(await client.get(master, headers=viewer.auth), 404)  # withheld from viewers
    assert await disconnect_reasons(client, owner, sid) == ["stream_ended"]
    # and its key publishes no more: the stream is over
    again = await publish_forever(settings, stream["stream_key"])
    stderr = await exits_within(again, 10.0)
    assert again.returncode != 0 and "stream has ended" not in stderr, stderr
