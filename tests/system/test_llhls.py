"""LL-HLS end to end: a real ffmpeg publishes over RTMP, the stream's live encoder makes
CMAF parts, the API serves LL-HLS playlists with blocking reloads, and hls.js in
headless Chromium (`lowLatencyMode`) plays it close to live.

One publish (the sample clip looped, paced as a camera) serves every test here."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import av
import httpx
import pytest
from sqlalchemy import text

from lumalive.db import Database
from lumalive.settings import Settings
from media.llhls.validate import attributes, problems
from tests.utils.api import BASE, Person, assert_error
from tests.utils.browser import CHROMIUM, CHROMIUM_ARGS, ROOT, screenshot
from tests.utils.rtmp import ffmpeg_publish

pytestmark = pytest.mark.slow

HLS_JS = ROOT / "web" / "node_modules" / "hls.js" / "dist" / "hls.min.js"


class Live:
    """The stream being published, as its owner and a playback URL see it."""

    def __init__(self, owner: Person, stream: dict[str, Any], pt: str) -> None:
        self.owner, self.stream, self.pt = owner, stream, pt
        self.sid = stream["id"]
        self.base = f"{BASE}/{self.sid}/llhls"


@pytest.fixture(scope="module")
async def live(
    client: httpx.AsyncClient,
    settings: Settings,
    make_user: Callable[[str], Awaitable[Person]],
) -> AsyncIterator[Live]:
    owner = await make_user("llhls")
    body = {"title": "low latency", "privacy": "private"}  # latencyMode: low by default
    r = await client.post(f"{BASE}/create", json=body, headers=owner.auth)
    assert r.status_code == 201, r.text
    stream = r.json()
    assert stream["latency_mode"] == "low"
    # The clip is 5.3 s; four plays in a row, published in real time.
    url = f"rtmp://127.0.0.1:{settings.rtmp_port}/live/{stream['stream_key']}"
    publisher = await ffmpeg_publish(url, loops=3)
    try:
        pt = await _playback_token(client, owner, stream["id"])
        live = Live(owner, stream, pt)
        await _until_ok(client, f"{live.base}/master.m3u8", pt, 30)
        yield live
    finally:
        if publisher.returncode is None:
            publisher.kill()
        await publisher.wait()


async def _playback_token(client: httpx.AsyncClient, owner: Person, sid: str) -> str:
    for _ in range(300):
        r = await client.post(f"{BASE}/{sid}/join", headers=owner.auth)
        if r.status_code == 200:
            joined = r.json()
            pt = str(re.search(r"[?&]pt=([^&]+)", joined["playback_url"]).group(1))  # type: ignore[union-attr]
            # A low-latency stream's join also names its LL-HLS master, same token.
            assert joined["ll_playback_url"].endswith(f"{sid}/llhls/master.m3u8?pt={pt}")
            assert joined["playback_url"].endswith(f"{sid}/hls/master.m3u8?pt={pt}")
            return pt
        await asyncio.sleep(0.1)  # publishing starts the stream
    raise AssertionError(f"the stream did not go live: {r.text}")


async def _until_ok(client: httpx.AsyncClient, path: str, pt: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        r = await client.get(path, params={"pt": pt})
        if r.status_code == 200:
            return r.text
        assert time.monotonic() < deadline, f"{path}: {r.status_code} {r.text}"
        await asyncio.sleep(0.2)


def _hint(playlist: str) -> tuple[int, int]:
    line = next(x for x in playlist.splitlines() if x.startswith("#EXT-X-PRELOAD-HINT"))
    m = re.match(r"(\d+)\.(\d+)\.m4s", attributes(line)["URI"])
    assert m, line
    return int(m.group(1)), int(m.group(2))


async def test_ll_playlists_follow_the_rules(client: httpx.AsyncClient, live: Live) -> None:
    master = await _until_ok(client, f"{live.base}/master.m3u8", live.pt, 5)
    # The test system's ladder is 480p/360p (media_max_height): both carried in LL.
    uris = [x.split("?")[0] for x in master.splitlines() if x and not x.startswith("#")]
    assert uris == ["480p/index.m3u8", "360p/index.m3u8"]
    # The clip's 5.1 AAC, as stereo AAC-LC in every LL rung (as in the pool's).
    assert len(re.findall(r'CODECS="avc1\.[0-9a-f]{6},mp4a\.40\.2"', master)) == 2, master
    text_ = await _until_ok(client, f"{live.base}/480p/index.m3u8", live.pt, 5)
    assert problems(text_) == [], text_
    for tag in ("#EXT-X-PART-INF:PART-TARGET=", "#EXT-X-PART:", "#EXT-X-PRELOAD-HINT:TYPE=PART",
                "CAN-BLOCK-RELOAD=YES", '#EXT-X-MAP:URI="init-0.mp4?pt=',
                '#EXT-X-RENDITION-REPORT:URI="../360p/index.m3u8?pt='):  # fmt: skip
        assert tag in text_, (tag, text_)
    assert ",INDEPENDENT=YES" in text_
    # A delta update passes the same rules (this short stream has nothing old to skip).
    r = await client.get(f"{live.base}/360p/index.m3u8", params={"pt": live.pt, "_HLS_skip": "YES"})
    assert r.status_code == 200 and problems(r.text) == [], r.text


async def test_blocking_reload_answers_when_the_part_is_published(
    client: httpx.AsyncClient, live: Live, db: Database
) -> None:
    path = f"{live.base}/480p/index.m3u8"
    playlist = await _until_ok(client, path, live.pt, 5)
    msn, part = _hint(playlist)
    r = await client.get(path, params={"pt": live.pt, "_HLS_msn": msn, "_HLS_part": part})
    answered = time.time()
    assert r.status_code == 200, r.text
    assert problems(r.text) == [], r.text
    later = re.search(rf'URI="(0*{msn}\.{part}\.m4s|0*{msn + 1}\.0\.m4s)\?', r.text)
    assert later, (msn, part, r.text)  # the part waited for (or the next segment's first)
    async with db.acting(live.owner.id) as conn:
        published = (
            await conn.execute(
                text(
                    "SELECT min(created_at) FROM ll_parts WHERE stream_id = :s"
                    " AND rendition = '480p' AND (sequence, part) >= (:q, :p)"
                ),
                {"s": live.sid, "q": msn, "p": part},
            )
        ).scalar_one()
    assert isinstance(published, datetime)
    part_target = float(re.search(r"PART-TARGET=([\d.]+)", r.text).group(1))  # type: ignore[union-attr]
    print(f"blocking reload answered {answered - published.timestamp():.3f} s after publication")
    # Within one part duration of its publication (a generous second on top: loaded box).
    assert answered - published.timestamp() < part_target + 1.0


async def test_blocking_reload_refusals(client: httpx.AsyncClient, live: Live) -> None:
    path = f"{live.base}/360p/index.m3u8"
    msn, _ = _hint(await _until_ok(client, path, live.pt, 5))
    r = await client.get(path, params={"pt": live.pt, "_HLS_msn": msn + 3})
    assert_error(r, 400, "hls_msn_too_far")
    assert_error(await client.get(path, params={"pt": live.pt, "_HLS_part": 1}), 400)
    # latencyMode is validated and stored; `normal` streams get no streaming encoder.
    r = await client.post(
        f"{BASE}/create", json={"title": "t", "latencyMode": "fast"}, headers=live.owner.auth
    )
    assert_error(r, 422)
    r = await client.post(
        f"{BASE}/create", json={"title": "t", "latencyMode": "normal"}, headers=live.owner.auth
    )
    assert r.status_code == 201 and r.json()["latency_mode"] == "normal", r.text
    # Someone who may not see the private stream: the same 404 as no stream.
    stranger = await client.get(f"{live.base}/master.m3u8")
    assert_error(stranger, 404)


async def test_init_and_parts_decode(client: httpx.AsyncClient, live: Live) -> None:
    """A segment's parts after their init segment, as a player appends them."""
    playlist = await _until_ok(client, f"{live.base}/360p/index.m3u8", live.pt, 5)
    lines = playlist.splitlines()
    init = attributes(next(x for x in lines if x.startswith("#EXT-X-MAP")))["URI"]
    parts = [attributes(x) for x in lines if x.startswith("#EXT-X-PART:")]
    first = next(i for i, p in enumerate(parts) if p.get("INDEPENDENT") == "YES")
    run = [parts[first]] + [
        p for p in parts[first + 1 :][: next(
            (i for i, p in enumerate(parts[first + 1 :]) if p.get("INDEPENDENT") == "YES"),
            len(parts) - first - 1,
        )]
    ]  # fmt: skip
    data = b""
    for uri in [init] + [p["URI"] for p in run]:
        r = await client.get(f"{live.base}/360p/{uri}")
        assert r.status_code == 200, (uri, r.text)
        data += r.content
    with av.open(io.BytesIO(data)) as c:
        frames = list(c.decode(video=0))
    duration = sum(float(p["DURATION"]) for p in run)
    assert frames and frames[0].key_frame and frames[0].height == 360
    assert len(frames) == round(duration * 25)  # the clip is 25 fps
    # The audio rides in the same parts: stereo, gapless, about as long as the video.
    with av.open(io.BytesIO(data)) as c:
        audio = list(c.decode(audio=0))
    assert audio and audio[0].layout.name == "stereo", audio[:1]
    gaps = [b.pts - a.pts - a.samples for a, b in zip(audio, audio[1:], strict=False)]
    assert set(gaps) == {0}, gaps
    heard = sum(f.samples for f in audio) / audio[0].sample_rate
    assert abs(heard - duration) < 0.2, (heard, duration)
    video_start = float(frames[0].pts * frames[0].time_base)
    assert abs(float(audio[0].pts * audio[0].time_base) - video_start) < 0.2


async def test_hls_js_plays_it_close_to_live(settings: Settings, live: Live) -> None:
    """A real LL-HLS client: hls.js with lowLatencyMode loads parts and plays within
    the aim's order of magnitude of live (< 10 s here)."""
    from playwright.async_api import async_playwright

    assert HLS_JS.is_file(), f"{HLS_JS} missing: npm ci --prefix web"
    url = f"{settings.api_url}{live.base}/master.m3u8?pt={live.pt}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        try:
            await page.goto(f"{settings.api_url}/healthz")  # the API's origin: no CORS
            await page.evaluate("document.body.innerHTML = '<video id=v muted playsinline>'")
            await page.add_script_tag(path=str(HLS_JS))
            await page.evaluate(_PLAY, url)
            await page.wait_for_function(
                "() => window.llErr || (v.currentTime > 1 && hls.playingDate)", timeout=30_000
            )
            result = await page.evaluate(_MEASURE)
        except BaseException:
            await screenshot(page, "llhls-hlsjs")
            raise
        finally:
            await browser.close()
    print(f"hls.js: {result}")
    assert result["error"] is None, result
    assert result["parts"] > 0, result  # it used the parts, not only whole segments
    assert result["frames"] > 0 and result["height"] in (360, 480), result
    assert 0 <= result["latency"] < 10, result


_PLAY = """url => {
  window.llErr = null; window.llParts = 0;
  const v = document.getElementById('v'); window.v = v;
  const hls = new Hls({ lowLatencyMode: true }); window.hls = hls;
  hls.on(Hls.Events.ERROR, (e, d) => { if (d.fatal) window.llErr = d.type + ': ' + d.details; });
  hls.on(Hls.Events.FRAG_LOADED, (e, d) => { if (d.part) window.llParts += 1; });
  hls.loadSource(url); hls.attachMedia(v); v.play().catch(() => {});
}"""
_MEASURE = """async () => {
  await new Promise(r => setTimeout(r, 2000));
  return {
    error: window.llErr, parts: window.llParts,
    latency: (Date.now() - hls.playingDate.getTime()) / 1000, hlsLatency: hls.latency,
    frames: v.getVideoPlaybackQuality().totalVideoFrames, height: v.videoHeight,
  };
}"""
