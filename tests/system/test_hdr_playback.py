"""HDR in the running system: an HDR10 (PQ, 10-bit HEVC) publish over Enhanced RTMP
to a stream with enableHDR plays back from the API as an H.264 SDR rung (tone mapped)
beside an HEVC Main10 PQ rung in fMP4: VIDEO-RANGE in the master playlist, EXT-X-MAP in
the media playlist, the init and `.m4s` segments served with their content types."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import av
import httpx

from lumalive.settings import Settings
from tests.utils.hdr_media import H, W, hdr_source


def _publish(flv: bytes, url: str) -> None:
    """Remux an FLV to RTMP with PyAV, whose FLV muxer speaks Enhanced RTMP (HEVC);
    Debian's ffmpeg CLI does not."""
    with av.open(io.BytesIO(flv), format="flv") as src, av.open(url, "w", format="flv") as out:
        video = src.streams.video[0]
        stream = out.add_stream_from_template(video)
        for packet in src.demux(video):
            if packet.size:
                packet.stream = stream
                out.mux(packet)


async def _get(client: httpx.AsyncClient, path: str, auth: dict[str, str]) -> httpx.Response:
    """GET `path` until it is 200 (the first segment is still in the pipeline)."""
    deadline = time.monotonic() + 60
    while True:
        r = await client.get(path, headers=auth)
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        await asyncio.sleep(0.3)


async def _listed(client: httpx.AsyncClient, path: str, auth: dict[str, str]) -> httpx.Response:
    """GET a media playlist until it lists a segment: each rung is published when its
    own job is done, so one rung's playlist may list a segment before another's."""
    deadline = time.monotonic() + 60
    while True:
        r = await _get(client, path, auth)
        if "#EXTINF" in r.text or time.monotonic() > deadline:
            return r
        await asyncio.sleep(0.3)


async def test_an_hdr10_publish_plays_back_as_pq_fmp4_beside_tone_mapped_sdr(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings
) -> None:
    owner = await make_user("hdrcaster")
    stream = await make_stream(owner, enableHDR=True)
    sid, base = stream["id"], f"/api/live-streaming/{stream['id']}/hls"
    url = f"rtmp://127.0.0.1:{settings.rtmp_port}/live/{stream['stream_key']}"
    await asyncio.to_thread(_publish, hdr_source(frames=6), url)

    master = await _get(client, f"{base}/master.m3u8", owner.auth)
    assert master.status_code == 200, master.text
    assert "#EXT-X-VERSION:7" in master.text
    variants = [line for line in master.text.splitlines() if line.startswith("#EXT-X-STREAM-INF")]
    assert len(variants) == 2, master.text
    assert "VIDEO-RANGE=SDR" in variants[0] and 'CODECS="avc1.' in variants[0]
    assert "VIDEO-RANGE=PQ" in variants[1] and 'CODECS="hvc1.2.4.L' in variants[1]
    hdr_name = master.text.splitlines()[master.text.splitlines().index(variants[1]) + 1]
    hdr_name = hdr_name.split("/")[0]
    assert hdr_name == f"{min(W, H)}p-hdr"

    # The SDR rung is the lowest and published first (the master lists both rungs as
    # soon as it is); the HDR twin's playlist may still be empty: wait for its segment.
    index = await _listed(client, f"{base}/{hdr_name}/index.m3u8", owner.auth)
    assert index.status_code == 200, index.text
    assert "#EXT-X-VERSION:7" in index.text and '#EXT-X-MAP:URI="init.mp4' in index.text
    [segment_uri] = [line for line in index.text.splitlines() if ".m4s" in line]
    init = await client.get(f"{base}/{hdr_name}/init.mp4", headers=owner.auth)
    media = await client.get(f"{base}/{hdr_name}/{segment_uri.split('?')[0]}", headers=owner.auth)
    assert init.status_code == 200 and init.headers["content-type"] == "video/mp4"
    assert media.status_code == 200 and media.headers["content-type"] == "video/iso.segment"
    wrong = await client.get(f"{base}/{hdr_name}/00000000.ts", headers=owner.auth)
    assert wrong.status_code == 404
    with av.open(io.BytesIO(init.content + media.content)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 6 and frames[0].format.name == "yuv420p10le"
    assert (frames[0].color_trc, frames[0].color_primaries) == (16, 9)

    sdr_index = await _listed(client, f"{base}/{min(W, H)}p/index.m3u8", owner.auth)
    assert "EXT-X-MAP" not in sdr_index.text and ".ts" in sdr_index.text
    r = await client.post(f"/api/live-streaming/end/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text
