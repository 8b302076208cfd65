"""Glass-to-glass latency per playback path, measured the way viewers watch.

A publisher in this process (`bench.latency_source`) sends frames that carry their
index as a barcode over RTMP in real time, noting when it handed each to the muxer;
viewers read the barcode back off what they show (`bench.latency_viewers`), so each
shown frame gives one latency: its wall time shown minus its wall time sent.

    ll-hls   hls.js in headless Chromium, lowLatencyMode on, playing the LL-HLS master
             (`/llhls/master.m3u8`: the streaming encoder's CMAF parts, blocking
             reloads; the row says "parts" when hls.js loaded parts)
    hls      the same page with lowLatencyMode off, playing the classic master
             (`/hls/master.m3u8`: the pool's TS segments), the baseline of the ratio
             column
    whep     aiortc WHEP players (`POST …/whep`), decoding every picture

Each path runs with 1 and 10 concurrent viewers (`--viewers`) for `--seconds` on one
continuous publish, each after a window with no viewer that gives the server's own
CPU ("server cores": no viewer -> viewers); "per viewer" is the server CPU (Ray
processes and Postgres, in cores) above that window, divided by the viewers.
Viewer-side CPU (Chromium, this process) is shown apart. Figures from a loaded
machine are noisy: compare rows of one run.

    .venv/bin/python -m bench.latency --quick              # smoke: 360p, 1 and 2 viewers, 6 s
    .venv/bin/python -m bench.latency                      # 720p source, ladder to 720p
    .venv/bin/python -m bench.latency --size 854x480 --max-height 480 --paths whep
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_load import CpuMeter  # noqa: E402
from bench.latency_source import Publisher  # noqa: E402
from bench.latency_viewers import HlsPages, WhepViewer  # noqa: E402
from cluster.launcher import System  # noqa: E402
from lumalive.auth import TokenService  # noqa: E402
from lumalive.db import Database  # noqa: E402
from lumalive.settings import Settings  # noqa: E402
from lumalive.store.users import create_named_user  # noqa: E402
from tests.utils.api import free_port  # noqa: E402

BASE = "/api/live-streaming"
_SETUP_S = 8.0  # per measurement, beyond --seconds: pages load, sessions connect
_SKIP_S = 1.0  # each viewer's first second (its start-up) is not counted


class ServerMeter(CpuMeter):
    """CpuMeter's /proc sampling with this bench's roles: the server's processes by
    Ray actor, Postgres, and the viewers (Chromium, this process)."""

    ROLES = ("ingest", "media", "api", "ray", "postgres", "viewers")
    SERVER = ("ingest", "media", "api", "ray", "postgres")

    @staticmethod
    def _role(pid: int, ppid: int, cmd: str, postmasters: set[int]) -> str | None:
        if pid == os.getpid() or "chrom" in cmd or "playwright" in cmd:
            return "viewers"
        if cmd.startswith("ray::IngestActor"):
            return "ingest"
        if cmd.startswith("ray::MediaWorker"):
            return "media"
        if cmd.startswith(("ray::ServeReplica", "ray::ProxyActor")):
            return "api"
        if ppid in postmasters or pid in postmasters:
            return "postgres"
        return "ray"

    def cores(self, roles: tuple[str, ...]) -> float:
        return sum(self.cpu[r] for r in roles) / max(self.wall, 1e-9)


@dataclass
class Row:
    path: str
    viewers: int
    latencies: list[float]
    server_cores: float
    viewer_cores: float
    note: str
    idle_cores: float = 0.0  # the server's CPU with no viewer, just before

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latencies(samples: list[list[tuple[int, float]]], sent: dict[int, float]) -> list[float]:
    """Shown minus sent, each frame once per viewer, past each viewer's start-up."""
    out: list[float] = []
    for viewer in samples:
        seen: set[int] = set()
        first = viewer[0][1] if viewer else 0.0
        for index, at in viewer:
            if index in seen or index not in sent or at - first < _SKIP_S:
                continue
            seen.add(index)
            out.append(at - sent[index])
    return out


async def owner_and_stream(settings: Settings, client: httpx.AsyncClient) -> dict[str, Any]:
    assert settings.jwt_secret
    tokens = TokenService(settings.jwt_secret, settings.jwt_audience)
    db = Database(settings, pool_size=1)
    async with db.acting(None) as conn:
        uid = await create_named_user(conn, f"latency-{time.time_ns()}")
    await db.dispose()
    auth = {"Authorization": f"Bearer {tokens.issue(uid, ttl_s=24 * 3600)}"}
    r = await client.post(f"{BASE}/create", json={"title": "latency bench"}, headers=auth)
    r.raise_for_status()
    return {**r.json(), "auth": auth}


async def wait_for_media(
    client: httpx.AsyncClient, sid: str, kind: str = "hls", timeout_s: float = 120
) -> None:
    """Until `kind`'s (hls, llhls) master exists and a media playlist lists two segments."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = await client.get(f"{BASE}/{sid}/{kind}/master.m3u8")
        if r.status_code == 200:
            first = next(line for line in r.text.splitlines() if line and line[0] != "#")
            media = await client.get(f"{BASE}/{sid}/{kind}/{first}")
            if media.text.count("#EXTINF") >= 2:
                return
        await asyncio.sleep(0.5)
    raise SystemExit(f"no {kind} media after {timeout_s:.0f} s: is the ingest up?")


async def measure_hls(
    settings: Settings, sid: str, low_latency: bool, n: int, seconds: float
) -> tuple[list[list[tuple[int, float]]], str]:
    kind = "llhls" if low_latency else "hls"  # each path its own master
    pages = HlsPages(
        settings.api_url,
        f"{settings.api_url}{BASE}/{sid}/{kind}/master.m3u8",
        low_latency=low_latency,
        n=n,
    )
    await pages.run(seconds + _SETUP_S / 2)
    parts = any(i.get("parts") for i in pages.info)
    heights = sorted({i.get("height") for i in pages.info})
    errors = sorted({e for i in pages.info for e in i.get("errors", [])})
    note = f"{'parts' if parts else 'no parts'}, {heights}p" + (
        f", errors {errors}" if errors else ""
    )
    return pages.samples, note


async def measure_whep(
    client: httpx.AsyncClient, sid: str, n: int, seconds: float
) -> tuple[list[list[tuple[int, float]]], str]:
    viewers = [WhepViewer(client, f"{BASE}/{sid}/whep") for _ in range(n)]
    try:
        await asyncio.gather(*(v.start() for v in viewers))
        await asyncio.sleep(seconds + _SETUP_S / 2)
    finally:
        await asyncio.gather(*(v.stop() for v in viewers), return_exceptions=True)
    sizes = sorted({v.size for v in viewers if v.size})
    return [v.samples for v in viewers], f"{sizes}"


async def bench(settings: Settings, args: argparse.Namespace, gcs: str) -> list[Row]:
    width, height = args.size
    runs = len(args.paths) * len(args.viewers)
    total = 60 + (runs + 1) * (args.seconds + _SETUP_S)
    async with httpx.AsyncClient(base_url=settings.api_url, timeout=60) as client:
        stream = await owner_and_stream(settings, client)
        sid = stream["id"]
        url = f"{settings.rtmp_url}/{stream['stream_key']}"
        publisher = Publisher(
            url, size=(width, height), fps=args.fps, gop_s=settings.segment_seconds, seconds=total
        )
        publisher.start()
        try:
            await wait_for_media(client, sid)
            if "ll-hls" in args.paths:
                await wait_for_media(client, sid, "llhls")
            print(f"publishing {width}x{height}@{args.fps} to {sid}; media is up", flush=True)
            rows = []
            for path in args.paths:
                for n in args.viewers:
                    # The server's own CPU just before (it drifts: the ladder's backlog).
                    with ServerMeter(settings.database_url or "", gcs) as idle:
                        await asyncio.sleep(args.seconds / 2)
                    idle_cores = idle.cores(ServerMeter.SERVER)
                    row = await one_run(
                        settings, client, sid, (path, n), args.seconds, publisher, gcs
                    )
                    row.idle_cores = idle_cores
                    rows.append(row)
                    print(_line(row, None), flush=True)
        finally:
            publisher.stop.set()
            await asyncio.to_thread(publisher.join, 10)
        if publisher.error:
            print(f"publisher: {publisher.error}")
        await client.post(f"{BASE}/end/{sid}", headers=stream["auth"])
    return rows


async def one_run(
    settings: Settings,
    client: httpx.AsyncClient,
    sid: str,
    run: tuple[str, int],
    seconds: float,
    publisher: Publisher,
    gcs: str,
) -> Row:
    path, n = run
    with ServerMeter(settings.database_url or "", gcs) as meter:
        if path == "whep":
            samples, note = await measure_whep(client, sid, n, seconds)
        else:
            samples, note = await measure_hls(settings, sid, path == "ll-hls", n, seconds)
    return Row(
        path,
        n,
        latencies(samples, dict(publisher.sent)),
        meter.cores(ServerMeter.SERVER),
        meter.cores(("viewers",)),
        note,
    )


def _line(row: Row, baseline: Row | None) -> str:
    ratio = f"{row.pct(0.5) / baseline.pct(0.5):5.2f}x" if baseline else "   -  "
    per = (row.server_cores - row.idle_cores) / row.viewers
    return (
        f"{row.path:7} {row.viewers:3}  {len(row.latencies):6}  {row.pct(0.5):6.2f}  "
        f"{row.pct(0.95):6.2f}  {ratio}  {row.idle_cores:5.2f} -> {row.server_cores:5.2f}  "
        f"{per:+7.3f}  {row.viewer_cores:7.2f}  {row.note}"
    )


def report(rows: list[Row]) -> None:
    print(
        "\npath    n   frames  p50 s   p95 s   vs hls  server cores    per viewer  "
        "viewer cores  notes"
    )
    for row in rows:
        baseline = next((r for r in rows if r.path == "hls" and r.viewers == row.viewers), None)
        print(_line(row, baseline))
    print("aims: ll-hls p95 < 3 s, whep p95 < 1 s (machine load inflates every figure)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke: 640x360, 1-2 viewers, 6 s")
    parser.add_argument("--paths", nargs="+", default=["ll-hls", "hls", "whep"])
    parser.add_argument("--viewers", nargs="+", type=int, default=[1, 10])
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--size", default="1280x720", help="the published picture")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--max-height", type=int, default=720, help="the ladder's top rung")
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--preset", default="veryfast", help="the ladder's x264 preset")
    args = parser.parse_args()
    if args.quick:
        args.viewers, args.seconds, args.size = [1, 2], 6.0, "640x360"
        args.max_height, args.preset, args.fps = 360, "ultrafast", 25
    args.size = tuple(int(v) for v in args.size.split("x"))
    return args


def main() -> int:
    args = parse_args()
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="lumalive-latency-")),
        api_port=free_port(),
        dashboard_port=free_port(),
        rtmp_port=free_port(),
        database_url=None,
        ray_address=None,
        media_max_height=args.max_height,
        segment_seconds=args.segment_seconds,
        x264_preset=args.preset,
        whep_max_sessions_per_caller=1000,  # every bench viewer is one anonymous address
        whep_max_sessions_per_stream=1000,
    )
    system = System(settings)
    import ray

    ray.init(namespace="lumalive", include_dashboard=False, log_to_driver=False)
    settings = system.start()
    gcs = ray.get_runtime_context().gcs_address
    try:
        rows = asyncio.run(bench(settings, args, gcs))
    finally:
        system.stop()
        ray.shutdown()
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
