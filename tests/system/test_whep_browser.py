"""A real browser plays WHEP: headless Chromium (Debian's, via Playwright) opens a page
that does what any WHEP player page does with `RTCPeerConnection`, against a stream a
real ffmpeg publishes over RTMP in H.264 High profile (no B-frames, as a low-latency
encoder sends it). The server passes that H.264 through untouched although the SDP
says constrained baseline (aiortc's one profile): the browser must still decode it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from lumalive.settings import Settings
from tests.utils.api import BASE
from tests.utils.browser import chromium
from tests.utils.rtmp import ffmpeg_live

pytestmark = pytest.mark.slow

PUBLISH_S = 12
_PAGE = "/__whep_test__.html"
_PLAYER = """<!doctype html><html><body><video autoplay muted playsinline></video><script>
window.play = async (url) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  const video = document.querySelector('video');
  const stream = new MediaStream();
  pc.ontrack = (e) => { stream.addTrack(e.track); video.srcObject = stream; };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === 'complete') return done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && done();
  });
  const r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/sdp'},
                              body: pc.localDescription.sdp});
  if (r.status !== 201) return {status: r.status, body: await r.text()};
  await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
  window.pc = pc;
  return {status: 201, location: r.headers.get('Location')};
};
window.decoded = async () => {
  let frames = 0, audio = 0;
  (await window.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0;
    if (s.type === 'inbound-rtp' && s.kind === 'audio') audio = s.packetsReceived || 0;
  });
  const v = document.querySelector('video');
  return {frames, audio, width: v.videoWidth, height: v.videoHeight};
};
</script></body></html>"""


async def test_chromium_plays_a_high_profile_publish_over_whep(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings
) -> None:
    owner = await make_user("caster")
    stream = await make_stream(owner)
    sid = stream["id"]
    url = f"{settings.rtmp_url}/{stream['stream_key']}"
    high = ("-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p")
    publisher = await ffmpeg_live(url, PUBLISH_S, *high)
    try:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.route(
                f"{settings.api_url}{_PAGE}",
                lambda route: route.fulfill(body=_PLAYER, content_type="text/html"),
            )
            await page.goto(f"{settings.api_url}{_PAGE}")
            deadline = time.monotonic() + 30
            while (result := await page.evaluate("(u) => window.play(u)", f"{BASE}/{sid}/whep"))[
                "status"
            ] == 409 and time.monotonic() < deadline:  # until the publish is live
                await asyncio.sleep(0.3)
            assert result["status"] == 201, result
            assert result["location"].startswith(f"{BASE}/{sid}/whep/")
            stats: dict[str, Any] = {}
            while time.monotonic() < deadline + 15:
                stats = await page.evaluate("window.decoded()")
                if stats["frames"] >= 25 and stats["audio"] >= 25:
                    break
                await asyncio.sleep(0.3)
            assert stats["frames"] >= 25 and stats["audio"] >= 25, stats
            assert (stats["width"], stats["height"]) == (320, 240)
            r = await client.delete(result["location"])
            assert r.status_code == 200, r.text
    finally:
        publisher.kill()
        await publisher.wait()
    r = await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text
