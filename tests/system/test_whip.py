"""WHIP ingest in the running system: a Python aiortc peer plays the browser, publishing
a synthetic camera and microphone to `POST /api/live-streaming/{id}/whip` with its
owner's token. The ingest actor answers, re-encodes, and the RTMP pipeline (segmenter,
Ray worker pool, Postgres playlists) publishes HLS that PyAV plays back.

ICE runs on loopback: the session's system keeps `LUMALIVE_WHIP_HOST_ADDRESSES` at its
default, 127.0.0.1, and this process gathers on 127.0.0.1 too.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import av
import httpx
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from aiortc.sdp import SessionDescription

from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.settings import Settings
from media.webrtc import use_host_addresses
from tests.utils.api import BASE, Person, assert_error
from tests.utils.db import rows_as
from tests.utils.webrtc import Camera

pytestmark = pytest.mark.slow

SIZE = (640, 360)
FPS = 30
TIMEOUT_S = 120.0


class Browser:
    """What the web app's `publishWhip` does, with aiortc: offer (ICE gathered), POST
    it with the owner's token, take the answer; DELETE the Location to stop."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.camera = Camera(SIZE, grey=100, step=6)
        self.pc.addTransceiver(self.camera, direction="sendonly")
        self.pc.addTransceiver(AudioStreamTrack(), direction="sendonly")

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def publish(self, client: httpx.AsyncClient, sid: str, who: Person) -> httpx.Response:
        r = await post_offer(client, sid, who, await self.offer())
        if r.status_code == 201:
            await self.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        return r


async def post_offer(
    client: httpx.AsyncClient, sid: str, who: Person, sdp: str, ctype: str = "application/sdp"
) -> httpx.Response:
    headers = {**who.auth, "Content-Type": ctype}
    return await client.post(f"{BASE}/{sid}/whip", content=sdp.encode(), headers=headers)


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)
    return value


async def status_of(client: httpx.AsyncClient, owner: Person, sid: str) -> str:
    r = await client.get(f"{BASE}/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


async def processed(db: Database, owner: Person, sid: str) -> list[dict[str, Any]]:
    return await rows_as(
        db,
        owner.id,
        "SELECT source_sequence, frames, dropped FROM stream_quality"
        " WHERE stream_id = :s ORDER BY source_sequence",
        s=sid,
    )


async def events(client: httpx.AsyncClient, owner: Person, sid: str) -> list[dict[str, Any]]:
    r = await client.get(f"{BASE}/{sid}/events", headers=owner.auth, params={"limit": 100})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def play(url: str) -> dict[tuple[int, int], int]:
    """Frames per video size, as FFmpeg's HLS demuxer plays the master playlist."""
    frames: dict[tuple[int, int], int] = defaultdict(int)
    with av.open(url, timeout=30) as hls:
        for packet in hls.demux(hls.streams.video):
            for frame in packet.decode():
                frames[(frame.width, frame.height)] += 1
    return dict(frames)


@pytest.fixture(autouse=True)
def loopback() -> None:
    use_host_addresses(["127.0.0.1"])


async def test_a_browser_goes_live_over_whip_and_its_stream_plays_back(
    client: httpx.AsyncClient,
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    db: Database,
    tokens: TokenService,
) -> None:
    owner, viewer = await make_user("caster"), await make_user("viewer")
    stream = await make_stream(owner)
    sid = stream["id"]

    # Offers that cannot be answered are refused before anything starts.
    assert_error(await post_offer(client, sid, owner, "hello"), 400, "invalid_offer")
    browser = Browser()
    offer = await browser.offer()
    r = await post_offer(client, sid, owner, offer, "application/json")
    assert_error(r, 400, "invalid_content_type")
    receiving = offer.replace("a=sendonly", "a=recvonly")
    assert_error(await post_offer(client, sid, owner, receiving), 400, "invalid_offer")
    assert await status_of(client, owner, sid) == "created"
    # Only the owner publishes: someone who can see the stream is refused.
    assert_error(await post_offer(client, sid, viewer, offer), 403, "not_stream_owner")

    r = await post_offer(client, sid, owner, offer)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/sdp")
    location = r.headers["location"]
    assert location.startswith(f"{BASE}/{sid}/whip/")
    [video] = [m for m in SessionDescription.parse(r.text).media if m.kind == "video"]
    assert video.rtp.codecs[0].mimeType == "video/H264"  # the server asks for H.264 first
    await browser.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
    assert await status_of(client, owner, sid) == "live"  # publishing started it

    # One publisher at a time: a second browser is refused while the first publishes.
    second = Browser()
    assert_error(await second.publish(client, sid, owner), 409, "already_publishing")
    await second.pc.close()
    r = await client.patch(location, headers=owner.auth, content=b"a=candidate")
    assert_error(r, 405, "method_not_allowed")

    # Segments are cut, encoded and published while the browser is live.
    await eventually(lambda: _at_least(db, owner, sid, 2), "two processed segments")
    live_index = await client.get(f"{BASE}/{sid}/hls/master.m3u8", headers=owner.auth)
    assert live_index.status_code == 200 and "#EXT-X-STREAM-INF" in live_index.text

    assert_error(await client.delete(location, headers=viewer.auth), 403, "not_stream_owner")
    r = await client.delete(location, headers=owner.auth)
    assert r.status_code == 200, r.text
    sent = browser.camera.sent
    assert_error(await client.delete(location, headers=owner.auth), 404, "whip_session_not_found")
    await browser.pc.close()

    # The publisher left as an RTMP one would: the stream waits for it (grace period).
    async def disconnected() -> list[dict[str, Any]]:
        kinds = [e for e in await events(client, owner, sid) if e["type"] == "ingest_disconnected"]
        return kinds

    [gone] = await eventually(disconnected, "ingest_disconnected")
    assert gone["data"] == {"reason": "unpublished"}
    assert await status_of(client, owner, sid) == "live"

    r = await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text
    quality = await processed(db, owner, sid)
    assert len(quality) >= 3 and not any(q["dropped"] for q in quality)
    published = sum(q["frames"] for q in quality)
    assert sent * 0.8 <= published <= sent  # loopback drops little; nothing is invented

    pt = tokens.issue_playback(owner.id, uuid.UUID(sid), 600)  # the VOD, as a player gets it
    frames = await asyncio.to_thread(
        play, f"{settings.api_url}{BASE}/{sid}/hls/master.m3u8?pt={pt}"
    )
    assert frames and all(n == published for n in frames.values()), frames
    assert max(frames) == SIZE  # the top rendition is the camera's size


async def _at_least(db: Database, owner: Person, sid: str, n: int) -> bool:
    return len(await processed(db, owner, sid)) >= n


async def test_whip_refusals_and_the_owner_ending_a_browser_publish(
    client: httpx.AsyncClient,
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    db: Database,
) -> None:
    owner, stranger = await make_user("caster"), await make_user("stranger")
    private = await make_stream(owner, privacy="private")
    offer = await Browser().offer()
    assert_error(await post_offer(client, private["id"], stranger, offer), 404)
    r = await client.post(f"{BASE}/{private['id']}/whip", content=offer.encode())
    assert_error(r, 401)

    stream = await make_stream(owner)
    sid = stream["id"]
    browser = Browser()
    r = await browser.publish(client, sid, owner)
    assert r.status_code == 201, r.text

    # While the browser publishes, an RTMP publish of the same stream is refused.
    rtmp = await asyncio.create_subprocess_exec(
        *("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re"),
        *("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "3"),
        *("-c:v", "libx264", "-f", "flv"),
        f"rtmp://127.0.0.1:{settings.rtmp_port}/live/{stream['stream_key']}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await rtmp.communicate()
    assert rtmp.returncode != 0, err

    await eventually(lambda: _at_least(db, owner, sid, 1), "a processed segment")
    # The owner ends the stream: the server hangs up on the browser.
    r = await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
    assert r.status_code == 200 and r.json()["status"] == "ended", r.text

    async def hung_up() -> bool:
        return browser.pc.connectionState in ("closed", "failed")

    await eventually(hung_up, "the server to close the browser's connection")
    await browser.pc.close()
    # An ended stream cannot be published again.
    again = Browser()
    assert_error(await again.publish(client, sid, owner), 409, "stream_not_live")
    await again.pc.close()
    refused = [e for e in await events(client, owner, sid) if e["type"] == "ingest_refused"]
    assert refused and refused[-1]["data"] == {"reason": "stream_ended"}
