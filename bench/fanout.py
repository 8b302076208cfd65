"""Fan-out benchmark: one live stream, N concurrent SSE subscribers, M chat messages/s.

    .venv/bin/python bench/fanout.py --subscribers 100 500 1000 --rate 5 --duration 10

Starts its own system (embedded Postgres, local Ray, Serve: the same
`cluster.launcher.System` as `lumalive up`) in a temporary directory, opens N
SSE connections to one public stream, posts M chat messages a second through
the API, and reports for each N: delivery latency (from the start of the POST
to the message's arrival at a subscriber) p50/p99/max over every
(message, subscriber) pair, messages lost (must be 0) and duplicated, and the
POSTs' own latency. The client shares the machine with the server, so on a
small machine its own CPU use is part of the figures.

Each open SSE connection is an ongoing request of the Serve replica, so the
replica's `max_ongoing_requests` must exceed N (the API keeps a tenth for
ordinary requests); `--max-ongoing` defaults to what the largest N needs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.launcher import System  # noqa: E402
from lumalive.auth import TokenService  # noqa: E402
from lumalive.db import Database  # noqa: E402
from lumalive.settings import Settings  # noqa: E402
from lumalive.store.users import create_named_user  # noqa: E402

BASE = "/api/live-streaming"
_BENCH = re.compile(rb'"message":"bench (\d+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Subscriber:
    """A raw-socket SSE client (HTTP/1.1, chunked), light enough to run a thousand."""

    host: str
    port: int
    path: str
    token: str
    received: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    error: str | None = None

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        try:
            writer.write(
                (
                    f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
                    f"Authorization: Bearer {self.token}\r\n"
                    "Accept: text/event-stream\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                self.error = head.split(b"\r\n", 1)[0].decode()
                self.ready.set()
                return
            chunked = b"chunked" in head.lower()
            buf = b""
            while True:
                if chunked:
                    size = int((await reader.readuntil(b"\r\n")).strip() or b"0", 16)
                    if size == 0:
                        return
                    data = (await reader.readexactly(size + 2))[:-2]
                else:
                    data = await reader.read(65536)
                    if not data:
                        return
                now = time.monotonic()
                buf += data
                *frames, buf = buf.split(b"\n\n")
                for frame in frames:
                    if b"event: viewer_count" in frame:
                        self.ready.set()
                    m = _BENCH.search(frame)
                    if m:
                        n = int(m.group(1))
                        if n in self.received:
                            self.duplicates += 1
                        else:
                            self.received[n] = now
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.error = repr(exc)
        finally:
            writer.close()


def serve_processes() -> dict[str, psutil.Process]:
    """This cluster's Serve proxy and API replica processes (to attribute CPU)."""
    import ray
    from ray.util.state import list_actors

    procs: dict[str, psutil.Process] = {}
    address = ray.get_runtime_context().gcs_address  # other Ray instances may share the host
    for a in list_actors(address=address, filters=[("state", "=", "ALIVE")]):
        name = a.class_name or ""
        if "ProxyActor" in name or "LumaApi" in name:
            key = "proxy" if "ProxyActor" in name else "replica"
            with contextlib.suppress(psutil.Error):
                procs[f"{key}{len([k for k in procs if k.startswith(key)]) or ''}"] = (
                    psutil.Process(a.pid)
                )
    return procs


def cpu_seconds(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for k, p in procs.items():
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            out[k] = t.user + t.system
    return out


async def wait_for_embedding(settings: Settings, stream_id: str, timeout: float = 120) -> None:
    import psycopg

    dsn = (settings.database_url or "").replace("postgresql+psycopg://", "postgresql://", 1)
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cur = await conn.execute(
                "SELECT 1 FROM stream_embeddings WHERE stream_id = %s", (stream_id,)
            )
            if await cur.fetchone():
                return
            await asyncio.sleep(0.5)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


async def one_round(
    api: httpx.AsyncClient,
    settings: Settings,
    stream_id: str,
    viewer: str,
    senders: list[str],
    n: int,
    rate: float,
    duration: float,
) -> dict[str, Any]:
    path = f"{BASE}/{stream_id}/events/stream"
    subs = [Subscriber(settings.api_host, settings.api_port, path, viewer) for _ in range(n)]
    t_open = time.monotonic()
    for i, s in enumerate(subs):  # open at a steady pace rather than in one burst
        s.task = asyncio.create_task(s.run())
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subs)), 120)
    failed = [s.error for s in subs if s.error]
    if failed:
        raise SystemExit(f"{len(failed)} subscribers failed to connect, e.g. {failed[0]}")
    opened_s = time.monotonic() - t_open

    sent: dict[int, float] = {}
    post_ms: list[float] = []
    base = int(time.time() * 1000) % 1_000_000 * 1000  # unique numbers across rounds

    async def post(k: int, sender: str) -> None:
        t0 = time.monotonic()
        r = await api.post(
            f"{BASE}/{stream_id}/chat",
            json={"message": f"bench {k}"},
            headers={"Authorization": f"Bearer {sender}"},
        )
        post_ms.append((time.monotonic() - t0) * 1000)
        if r.status_code == 201:
            sent[k] = t0
        else:
            print(f"  chat POST {r.status_code}: {r.text[:120]}", file=sys.stderr)

    total = int(rate * duration)
    procs = serve_processes()
    cpu0 = cpu_seconds(procs)
    start = time.monotonic()
    posts = []
    for i in range(total):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        posts.append(asyncio.create_task(post(base + i, senders[i % len(senders)])))
    await asyncio.gather(*posts)
    elapsed = time.monotonic() - start
    cpu1 = cpu_seconds(procs)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(len(s.received) < len(sent) for s in subs):
        await asyncio.sleep(0.2)

    latencies = [
        (s.received[k] - t0) * 1000 for s in subs for k, t0 in sent.items() if k in s.received
    ]
    lost = sum(1 for s in subs for k in sent if k not in s.received)
    for s in subs:
        assert s.task is not None
        s.task.cancel()
    await asyncio.gather(*(s.task for s in subs if s.task), return_exceptions=True)
    await asyncio.sleep(1.0)  # let the server notice the disconnects
    return {
        "subscribers": n,
        "messages": len(sent),
        "deliveries": len(latencies),
        "p50_ms": pct(latencies, 0.50),
        "p99_ms": pct(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
        "lost": lost,
        "duplicates": sum(s.duplicates for s in subs),
        "post_p50_ms": pct(post_ms, 0.5),
        "post_p99_ms": pct(post_ms, 0.99),
        "connect_s": opened_s,
        "load1": os.getloadavg()[0],
        "pids": {k: p.pid for k, p in procs.items()},
        "cpu": " ".join(
            f"{k}={100 * (cpu1[k] - cpu0[k]) / elapsed:.0f}%" for k in sorted(cpu1) if k in cpu0
        ),
    }


async def bench(settings: Settings, sizes: list[int], rate: float, duration: float) -> None:
    assert settings.jwt_secret
    tokens = TokenService(settings.jwt_secret, settings.jwt_audience)
    db = Database(settings, pool_size=2)

    async def user(name: str) -> str:
        async with db.acting(None) as conn:
            uid = await create_named_user(conn, f"{name}-{time.time_ns()}")
        return tokens.issue(uid, ttl_s=24 * 3600)

    owner, viewer = await user("owner"), await user("viewer")
    # The chat limit is 5/s per user; 4/s each keeps every sender under it.
    senders = [await user(f"sender{i}") for i in range(max(1, math.ceil(rate / 4)))]
    await db.dispose()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=settings.api_url, timeout=60, limits=limits) as api:
        auth = {"Authorization": f"Bearer {owner}"}
        r = await api.post(f"{BASE}/create", json={"title": "fan-out bench"}, headers=auth)
        sid = r.json()["id"]
        await api.post(f"{BASE}/start/{sid}", headers=auth)
        # Creating a stream embeds it in the background (the embedding actor loads
        # torch); let that finish so it does not land in the measurement.
        await wait_for_embedding(settings, sid)
        print(
            f"{'subs':>6} {'msgs':>5} {'deliveries':>10} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'max ms':>8} {'lost':>5} {'dup':>4} {'POST p50/p99 ms':>16} {'connect s':>9} "
            f"{'load1':>6}  CPU while sending"
        )
        for n in sizes:
            res = await one_round(api, settings, sid, viewer, senders, n, rate, duration)
            print(
                f"{res['subscribers']:>6} {res['messages']:>5} {res['deliveries']:>10} "
                f"{res['p50_ms']:>8.1f} {res['p99_ms']:>8.1f} {res['max_ms']:>8.1f} "
                f"{res['lost']:>5} {res['duplicates']:>4} "
                f"{res['post_p50_ms']:>7.1f}/{res['post_p99_ms']:<8.1f} "
                f"{res['connect_s']:>9.1f} {res['load1']:>6.1f}  {res['cpu']}",
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--rate", type=float, default=5.0, help="chat messages per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of chat per round")
    parser.add_argument("--replicas", type=int, default=1, help="API replicas")
    parser.add_argument(
        "--max-ongoing",
        type=int,
        default=None,
        help="max_ongoing_requests per replica (default: enough for the largest N)",
    )
    parser.add_argument(
        "--haproxy",
        action="store_true",
        help="experiment: Serve's HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY=1), "
        "where HAProxy forwards HTTP to the replicas and no Serve proxy "
        "relays each chunk",
    )
    args = parser.parse_args()
    if args.haproxy:  # read by Serve in every Ray process this driver starts
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    need = max(args.subscribers)
    max_ongoing = args.max_ongoing or max(1000, math.ceil((need + 50) / 0.9))
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="lumalive-fanout-")),
        api_port=free_port(),
        dashboard_port=free_port(),
        rtmp_port=free_port(),
        database_url=None,
        ray_address=None,
        api_replicas=args.replicas,
        max_ongoing_requests=max_ongoing,
        max_realtime_per_user=0,  # every subscriber is the same viewer: no per-user cap
    )
    system = System(settings)
    print(
        f"starting the system (max_ongoing_requests={max_ongoing}, replicas={args.replicas})",
        flush=True,
    )
    settings = system.start()
    try:
        asyncio.run(bench(settings, args.subscribers, args.rate, args.duration))
    finally:
        system.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
