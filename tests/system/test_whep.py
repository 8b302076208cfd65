"""WHEP playback in the running system: a real ffmpeg publishes over RTMP, and an aiortc
peer plays the viewer, posting its offer to `POST /api/live-streaming/{id}/whep` as a
WHEP player does. The ingest actor answers and sends the publisher's H.264 as it
arrives (no re-encoding) with its AAC as Opus; the viewer decodes both. A source WebRTC
cannot take as it is (B-frames, HEVC over Enhanced RTMP, published with PyAV) plays
from the streaming encoder's lowest LL rung; without one, HEVC is refused (409).

ICE runs on loopback: the system keeps `LUMALIVE_WHIP_HOST_ADDRESSES` at 127.0.0.1,
and this process gathers on 127.0.0.1 too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import av
import httpx
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from actors import ingest_actor
from lumalive.settings import Settings
from media.webrtc import use_host_addresses
from tests.utils.api import BASE, assert_error
from tests.utils.media import frame_index
from tests.utils.pyav_live import pyav_live
from tests.utils.rtmp import ffmpeg_live

pytestmark = pytest.mark.slow

SIZE = (320, 240)
PUBLISH_S = 14


class Viewer:
    """What a WHEP player does, with aiortc: a receive-only offer (ICE gathered),
    POSTed to the stream's WHEP URL; the answer applied; DELETE the Location to stop."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.frames: list[av.VideoFrame] = []
        self.sounds: list[av.AudioFrame] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._track)

    def _track(self, track: MediaStreamTrack) -> None:
        into: list[Any] = self.frames if track.kind == "video" else self.sounds
        self._tasks.append(asyncio.ensure_future(_receive(track, into)))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def play(
        self, client: httpx.AsyncClient, sid: str, headers: dict[str, str]
    ) -> httpx.Response:
        r = await post_offer(client, sid, await self.offer(), headers)
        if r.status_code == 201:
            await self.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        return r

    async def close(self) -> None:
        await self.pc.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _receive(track: MediaStreamTrack, into: list[Any]) -> None:
    try:
        while True:
            into.append(await track.recv())
    except MediaStreamError:
        return


async def post_offer(
    client: httpx.AsyncClient,
    sid: str,
    sdp: str,
    headers: dict[str, str] | None = None,
    ctype: str = "application/sdp",
) -> httpx.Response:
    headers = {**(headers or {}), "Content-Type": ctype}
    return await client.post(f"{BASE}/{sid}/whep", content=sdp.encode(), headers=headers)


async def eventually(check: Any, what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
    return value


@pytest.fixture(autouse=True)
def loopback() -> None:
    use_host_addresses(["127.0.0.1"])


async def test_a_viewer_plays_an_rtmp_publish_over_whep(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings
) -> None:
    owner = await make_user("caster")
    stream = await make_stream(owner)
    sid = stream["id"]
    viewer = Viewer()
    offer = await viewer.offer()
    # Not being published yet: nothing to play.
    assert_error(await post_offer(client, sid, offer), 409, "stream_not_live")
    sending = offer.replace("a=recvonly", "a=sendonly")
    url = f"{settings.rtmp_url}/{stream['stream_key']}"
    # Without B-frames (as WebRTC wants it).
    publisher = await ffmpeg_live(url, PUBLISH_S, "-preset", "ultrafast")
    try:

        async def answered() -> httpx.Response | None:
            r = await post_offer(client, sid, offer)  # anonymous: the stream is public
            return r if r.status_code != 409 else None

        r = await eventually(answered, "the stream to be live")
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].startswith("application/sdp")
        location = r.headers["location"]
        assert location.startswith(f"{BASE}/{sid}/whep/")
        # Bodies that are no offer a viewer can play are refused before anything starts.
        assert_error(await post_offer(client, sid, "hello"), 400, "invalid_offer")
        assert_error(await post_offer(client, sid, sending), 400, "invalid_offer")
        r2 = await post_offer(client, sid, offer, ctype="text/plain")
        assert_error(r2, 400, "invalid_content_type")
        await viewer.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))

        async def playing() -> bool:
            return len(viewer.frames) >= 25 and len(viewer.sounds) >= 25

        await eventually(playing, "a second of pictures and sound", 20)
        assert {(f.width, f.height) for f in viewer.frames} == {SIZE}  # the source's own
        assert {s.sample_rate for s in viewer.sounds} == {48_000}  # Opus
        # Sessions per caller are bounded (LUMALIVE_WHEP_MAX_SESSIONS_PER_CALLER, 3).
        fan = await make_user("fan")
        taken = [await post_offer(client, sid, offer, fan.auth) for _ in range(3)]
        assert [t.status_code for t in taken] == [201] * 3, taken[-1].text
        too_many = await post_offer(client, sid, offer, fan.auth)
        assert_error(too_many, 429, "whep_too_many_sessions")
        for t in taken:
            assert (await client.delete(t.headers["location"])).status_code == 200
        # The viewer ends the session: the server hangs up and forgets it.
        r = await client.delete(location)
        assert r.status_code == 200, r.text

        async def hung_up() -> bool:
            return viewer.pc.connectionState in ("closed", "failed")

        await eventually(hung_up, "the server to close the viewer's connection", 10)
        assert_error(await client.delete(location), 404, "whep_session_not_found")
    finally:
        await viewer.close()
        publisher.kill()
        await publisher.wait()
    r = await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text


async def test_whep_is_refused_to_whom_hls_is(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any
) -> None:
    owner, stranger = await make_user("caster"), await make_user("stranger")
    private = await make_stream(owner, privacy="private", start=True)
    offer = await Viewer().offer()
    pid = private["id"]
    hls = await client.get(f"{BASE}/{pid}/hls/master.m3u8", headers=stranger.auth)
    assert_error(hls, 404)
    assert_error(await post_offer(client, pid, offer, stranger.auth), 404, "stream_not_found")
    assert_error(await post_offer(client, pid, offer), 404, "stream_not_found")  # anonymous
    # Its owner may watch: admitted past access, refused only for having no publisher.
    assert_error(await post_offer(client, pid, offer, owner.auth), 409, "stream_not_live")
    r = await client.post(f"{BASE}/end/{pid}", headers=owner.auth)
    assert r.status_code == 200, r.text
    assert_error(await client.delete(f"{BASE}/{pid}/whep/nope"), 404, "whep_session_not_found")
    # A user banned from a public stream gets 403 for its WHEP as for its HLS.
    public = await make_stream(owner, start=True)
    ban = {"userId": str(stranger.id)}
    r = await client.post(f"{BASE}/{public['id']}/bans", json=ban, headers=owner.auth)
    assert r.status_code == 201, r.text
    hls = await client.get(f"{BASE}/{public['id']}/hls/master.m3u8", headers=stranger.auth)
    assert_error(hls, 403, "banned_from_stream")
    banned = await post_offer(client, public["id"], offer, stranger.auth)
    assert_error(banned, 403, "banned_from_stream")
    r = await client.post(f"{BASE}/end/{public['id']}", headers=owner.auth)
    assert r.status_code == 200, r.text


async def test_a_ban_ends_the_banned_viewers_playback_and_an_end_every_playback(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings
) -> None:
    owner, fan, other = await make_user("caster"), await make_user("fan"), await make_user("other")
    stream = await make_stream(owner)
    sid = stream["id"]
    publisher = await ffmpeg_live(f"{settings.rtmp_url}/{stream['stream_key']}", 12)
    banned, watching = Viewer(), Viewer()
    try:
        for viewer, who in ((banned, fan), (watching, other)):
            await _watch(client, sid, viewer, who.auth)

        async def both_playing() -> bool:
            return len(banned.frames) >= 5 and len(watching.frames) >= 5

        await eventually(both_playing, "both viewers to get pictures", 20)
        ban = {"userId": str(fan.id)}
        r = await client.post(f"{BASE}/{sid}/bans", json=ban, headers=owner.auth)
        assert r.status_code == 201, r.text

        async def hung_up() -> bool:
            return banned.pc.connectionState in ("closed", "failed")

        await eventually(hung_up, "the banned viewer's connection to close", 5)
        seen = len(watching.frames)

        async def still_playing() -> bool:
            return len(watching.frames) >= seen + 10  # the other viewer is not cut off

        await eventually(still_playing, "the other viewer to keep getting pictures", 5)
        assert watching.pc.connectionState == "connected"
        again = await post_offer(client, sid, await Viewer().offer(), fan.auth)
        assert_error(again, 403, "banned_from_stream")
        # The owner ends the stream while it is published: every playback ends with it.
        r = await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
        assert r.status_code == 200, r.text

        async def all_hung_up() -> bool:
            return watching.pc.connectionState in ("closed", "failed")

        await eventually(all_hung_up, "the last viewer's connection to close", 5)
    finally:
        await asyncio.gather(banned.close(), watching.close())
        if publisher.returncode is None:  # ending the stream hung up on it already
            publisher.kill()
        await publisher.wait()


async def _watch(
    client: httpx.AsyncClient, sid: str, viewer: Viewer, headers: dict[str, str]
) -> None:
    """The viewer plays the stream, once the ingest has its publisher (no more 409)."""
    offer = await viewer.offer()

    async def answered() -> httpx.Response | None:
        r = await post_offer(client, sid, offer, headers)
        return r if r.status_code != 409 else None

    r = await eventually(answered, "the stream to be live")
    assert r.status_code == 201, r.text
    await viewer.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))


async def test_a_b_frame_source_plays_from_the_lowest_ll_rung(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings
) -> None:
    owner = await make_user("caster")
    stream = await make_stream(owner)  # latency mode low: it has a streaming encoder
    sid = stream["id"]
    b_frames = ("-preset", "superfast", "-x264-params", "bframes=2")
    publisher = await ffmpeg_live(f"{settings.rtmp_url}/{stream['stream_key']}", 10, *b_frames)
    viewer = Viewer()
    try:
        await _watch(client, sid, viewer, owner.auth)

        async def playing() -> bool:
            return len(viewer.frames) >= 25 and len(viewer.sounds) >= 25

        await eventually(playing, "a second of pictures and sound", 20)
        ingest = ingest_actor.lookup()
        assert ingest is not None
        whep = (await ingest.status.remote())["whep"][sid]
        # Its pictures are the streaming encoder's lowest rung: WebRTC encodes nothing.
        assert whep["rung"] == "240p" and whep["rung_pictures"] > 0, whep
        assert not whep["reencoding"]
        assert {(f.width, f.height) for f in viewer.frames} == {SIZE}
    finally:
        await viewer.close()
        publisher.kill()
        await publisher.wait()
    r = await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text


async def test_an_hevc_source_plays_from_the_lowest_ll_rung_and_without_one_is_refused(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings
) -> None:
    owner = await make_user("caster")
    low = await make_stream(owner)  # latency mode low: its streaming encoder makes H.264
    normal = await make_stream(owner, latencyMode="normal")  # ... this one has none
    publishers = [
        await pyav_live(f"{settings.rtmp_url}/{s['stream_key']}", 6) for s in (low, normal)
    ]
    viewer, probe = Viewer(), Viewer()
    try:
        await _watch(client, low["id"], viewer, owner.auth)
        offer = await probe.offer()

        async def answered() -> httpx.Response | None:
            r = await post_offer(client, normal["id"], offer, owner.auth)
            return r if r.status_code != 409 or "stream_not_live" not in r.text else None

        refused = await eventually(answered, "the normal stream to be published")
        assert_error(refused, 409, "whep_unavailable")
        message = refused.json()["error"]["message"]
        assert "HEVC" in message and "HLS" in message, message

        async def playing() -> bool:
            return len(viewer.frames) >= 10 and len(viewer.sounds) >= 25

        await eventually(playing, "a second of pictures and sound", 20)
        ingest = ingest_actor.lookup()
        assert ingest is not None
        whep = (await ingest.status.remote())["whep"][low["id"]]
        # The source's HEVC is not sent; the streaming encoder's lowest rung is, as it is.
        assert whep["video_codec"] == "hevc" and whep["rung"] == "180p", whep
        assert whep["rung_pictures"] > 0 and not whep["reencoding"], whep
        assert {(f.width, f.height) for f in viewer.frames} == {(320, 180)}
        indices = [frame_index(f) for f in viewer.frames]  # decodable, in the source's order
        assert indices == sorted(set(indices)), indices
        assert {s.sample_rate for s in viewer.sounds} == {48_000}  # Opus
    finally:
        await asyncio.gather(viewer.close(), probe.close())
        for publisher in publishers:
            if publisher.returncode is None:
                publisher.kill()
            await publisher.wait()
    for stream in (low, normal):
        r = await client.post(f"{BASE}/end/{stream['id']}", headers=owner.auth)
        assert r.status_code == 200, r.text
