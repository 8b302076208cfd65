"""The latency bench's viewers: each records (frame index, wall time it was shown or
decoded) for the frames it gets, read back from the barcode (`bench.latency_source`).

- `HlsPages`: hls.js in headless Chromium (Debian's `/usr/bin/chromium`, Playwright),
  one page per viewer, `lowLatencyMode` on (LL-HLS where the playlist has parts) or
  off (classic HLS, three target durations behind the live edge). The page is served
  at the API's own origin (Playwright answers its request), so hls.js loads the
  playlists same-origin; each presented frame (`requestVideoFrameCallback`) is drawn
  on a canvas and its barcode read in JavaScript, with `Date.now()`, the same clock
  as the publisher's `time.time()` on this machine.
- `WhepViewer`: aiortc as a WHEP player: a receive-only offer POSTed to the stream's
  WHEP URL; each decoded picture's barcode read with numpy as it comes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.latency_source import BITS, BLOCKS, read_index

__all__ = ["HlsPages", "WhepViewer"]

ROOT = Path(__file__).resolve().parents[1]
HLS_JS = ROOT / "web" / "node_modules" / "hls.js" / "dist" / "hls.min.js"
CHROMIUM = "/usr/bin/chromium"
_PAGE = "/__latency_bench__.html"

_SCRIPT = """
const params = new URLSearchParams(location.search);
const video = document.querySelector('video');
const canvas = document.createElement('canvas');
const ctx = canvas.getContext('2d', {willReadFrequently: true});
window.samples = []; window.info = {parts: false, height: 0, errors: []};
const hls = new Hls({lowLatencyMode: params.get('ll') === '1'});
hls.on(Hls.Events.LEVEL_UPDATED, (_, d) => {
  if (d.details.partList && d.details.partList.length) window.info.parts = true;
});
hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) window.info.errors.push(d.details); });
hls.loadSource(params.get('src'));
hls.attachMedia(video);
video.muted = true;
video.play().catch(() => {});
function read(now) {
  const w = 360;
  const h = Math.max(2, Math.round(w * video.videoHeight / Math.max(1, video.videoWidth)));
  if (video.videoWidth) {
    canvas.width = w; canvas.height = h;
    ctx.drawImage(video, 0, 0, w, h);
    const row = ctx.getImageData(0, Math.floor(h / 20), w, 1).data;
    const bit = (i) => { const x = Math.floor((i + 0.5) * w / BLOCKS) * 4;
                         return (row[x] + row[x + 1] + row[x + 2]) / 3 > 128; };
    if (bit(0) && !bit(1)) {
      let index = 0;
      for (let b = 0; b < BITS; b++) index = index * 2 + (bit(2 + b) ? 1 : 0);
      window.samples.push([index, Date.now() / 1000]);
    }
    window.info.height = video.videoHeight;
  }
  video.requestVideoFrameCallback(read);
}
video.requestVideoFrameCallback(read);
"""


def _page_html() -> str:
    script = _SCRIPT.replace("BLOCKS", str(BLOCKS)).replace("BITS", str(BITS))
    return (
        "<!doctype html><html><body><video playsinline muted></video>"
        f"<script>{HLS_JS.read_text()}</script><script>{script}</script></body></html>"
    )


class HlsPages:
    """`n` hls.js viewers of `master_url` in one headless Chromium."""

    def __init__(self, api_url: str, master_url: str, *, low_latency: bool, n: int) -> None:
        self.api_url, self.master_url, self.low_latency, self.n = (
            api_url,
            master_url,
            low_latency,
            n,
        )
        self.samples: list[list[tuple[int, float]]] = []
        self.info: list[dict[str, Any]] = []

    async def run(self, seconds: float) -> None:
        from playwright.async_api import async_playwright

        html = _page_html()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
            )
            try:
                context = await browser.new_context()
                await context.route(
                    f"{self.api_url}{_PAGE}**",
                    lambda route: route.fulfill(body=html, content_type="text/html"),
                )
                pages = [await context.new_page() for _ in range(self.n)]
                ll = "1" if self.low_latency else "0"
                url = f"{self.api_url}{_PAGE}?ll={ll}&src={quote(self.master_url, safe='')}"
                await asyncio.gather(*(p.goto(url) for p in pages))
                await asyncio.sleep(seconds)
                for page in pages:
                    self.samples.append(
                        [tuple(s) for s in await page.evaluate("window.samples || []")]
                    )
                    self.info.append(json.loads(await page.evaluate("JSON.stringify(window.info)")))
            finally:
                await browser.close()


class WhepViewer:
    """One aiortc WHEP player; `samples` are (index, wall time) of decoded pictures."""

    def __init__(self, client: httpx.AsyncClient, whep_url: str) -> None:
        self._client, self._url = client, whep_url
        self.pc = RTCPeerConnection()
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.samples: list[tuple[int, float]] = []
        self.size: tuple[int, int] | None = None
        self.location: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._track)

    def _track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._receive(track)))

    async def _receive(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: Any = await track.recv()
                if track.kind != "video":
                    continue
                at = time.time()
                index = read_index(frame.to_ndarray(format="gray"))
                self.size = (frame.width, frame.height)
                if index is not None:
                    self.samples.append((index, at))

    async def start(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        r = await self._client.post(
            self._url,
            content=self.pc.localDescription.sdp.encode(),
            headers={"Content-Type": "application/sdp"},
        )
        if r.status_code != 201:
            raise RuntimeError(f"WHEP POST {r.status_code}: {r.text}")
        self.location = r.headers["location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))

    async def stop(self) -> None:
        if self.location:
            with contextlib.suppress(httpx.HTTPError):
                await self._client.delete(self.location)
        await self.pc.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
