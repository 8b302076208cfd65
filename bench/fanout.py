"""Fan-out benchmark: one live stream, N concurrent SSE (or WebSocket) subscribers,
M chat messages/s plus R reactions/s.

    .venv/bin/python bench/fanout.py --subscribers 100 500 1000 --rate 5 --duration 10
    .venv/bin/python bench/fanout.py --subscribers 2000 --rate 20 --reaction-rate 200
    .venv/bin/python bench/fanout.py --quick                # smoke run, both targets

Starts its own system (embedded Postgres, local Ray, Serve: the same
`cluster.launcher.System` as `lumalive up`, with its settings unless told) in a
temporary directory, and beside it the same app under plain uvicorn
(`serve_app.standalone`, joined to the same Ray and Postgres). For each target and
each N it opens N subscriptions to one public stream, posts M chat messages and R
reactions a second through the API, and reports: delivery latency (from the start
of the POST to the message's arrival at a subscriber) p50/p99/max over every
(message, subscriber) pair, messages lost (must be 0) and duplicated, the POSTs'
own latency, the p99 of another user's GET of the stream while it runs against the
same GET idle (should stay within 2x), and the CPU per delivery by role (the
steadier figure on a shared machine; `bench.api_load.CpuMeter`). Then the
Serve/uvicorn ratios. The client shares the machine with the server, so on a small
machine its own CPU use is part of the figures.

Each open SSE connection is an ongoing request of the Serve replica, so the
replica's `max_ongoing_requests` must exceed N (the API keeps a tenth for
ordinary requests); `--max-ongoing` defaults to what the largest N needs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
from websockets.asyncio.client import connect as ws_connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_load import CpuMeter, baseline_server  # noqa: E402
from cluster.launcher import System, ingress_env  # noqa: E402
from lumalive.auth import TokenService  # noqa: E402
from lumalive.db import Database  # noqa: E402
from lumalive.settings import Settings  # noqa: E402
from lumalive.store.users import create_named_user  # noqa: E402

BASE = "/api/live-streaming"
_BENCH = re.compile(rb'"message":"bench (\d+)"')
_BENCH_TEXT = re.compile(r'"message":"bench (\d+)"')
REACTIONS = ["🔥", "❤️", "👍", "😂", "👏"]


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


@dataclass
class WsSubscriber:
    """The same measurement over the event WebSocket (one JSON text frame per event)."""

    url: str
    received: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    error: str | None = None

    async def run(self) -> None:
        try:
            async with ws_connect(self.url, max_queue=None) as ws:
                async for raw in ws:
                    now = time.monotonic()
                    text = raw if isinstance(raw, str) else raw.decode()
                    if '"viewer_count"' in text:
                        self.ready.set()
                    m = _BENCH_TEXT.search(text)
                    if m:
                        n = int(m.group(1))
                        if n in self.received:
                            self.duplicates += 1
                        else:
                            self.received[n] = now
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            self.error = repr(exc)
            self.ready.set()


class ChatSocket:
    """A sender that chats over its own event WebSocket (`{"type": "chat"}` frames,
    acked by `ref`) instead of POSTing: `send` returns the HTTP status the ack stands for."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pending: dict[str, asyncio.Future[int]] = {}
        self._ws: Any = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._ws = await ws_connect(self.url, max_queue=None)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self._ws:
                if '"ref"' not in raw:
                    continue  # an event
                msg = json.loads(raw)
                fut = self._pending.pop(str(msg.get("ref")), None)
                if fut is not None and not fut.done():
                    ok = msg["type"] == "chat_ack"
                    fut.set_result(201 if ok else int(msg["error"].get("status", 0)))

    async def send(self, k: int) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[str(k)] = fut
        await self._ws.send(json.dumps({"type": "chat", "message": f"bench {k}", "ref": str(k)}))
        return await asyncio.wait_for(fut, 60)

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        if self._ws is not None:
            await self._ws.close()


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


@dataclass
class Round:
    """One round's load: where to send it and how much."""

    url: str  # the API's base URL (Serve, or the uvicorn baseline)
    stream_id: str
    viewer: str  # the subscribers' token (one user: the per-user cap is off)
    prober: str  # another user, whose GETs must stay fast
    senders: list[str]  # chat senders (4/s each, under the 5/s limit)
    reactors: list[str]  # reaction senders (15/s each, under the 20/s limit)
    rate: float
    reaction_rate: float
    duration: float
    transport: str  # sse or ws
    chat_over: str = "post"  # or ws: each sender chats over its own event WebSocket


async def _probe(api: httpx.AsyncClient, r: Round, until: asyncio.Event) -> list[float]:
    """Another user's GET of the stream every 100 ms until `until` is set (ms)."""
    out: list[float] = []
    auth = {"Authorization": f"Bearer {r.prober}"}
    while not until.is_set():
        t0 = time.monotonic()
        resp = await api.get(f"{r.url}{BASE}/{r.stream_id}", headers=auth)
        if resp.status_code == 200:
            out.append((time.monotonic() - t0) * 1000)
        await asyncio.sleep(0.1)
    return out


async def _idle_probe(api: httpx.AsyncClient, r: Round) -> list[float]:
    stop = asyncio.Event()
    task = asyncio.create_task(_probe(api, r, stop))
    await asyncio.sleep(2.0)
    stop.set()
    return await task


def _subscribers(r: Round, n: int) -> list[Any]:
    host_port = r.url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    if r.transport == "ws":
        url = f"ws://{host_port}{BASE}/{r.stream_id}/ws?access_token={r.viewer}"
        return [WsSubscriber(url) for _ in range(n)]
    path = f"{BASE}/{r.stream_id}/events/stream"
    return [Subscriber(host, int(port), path, r.viewer) for _ in range(n)]


async def one_round(
    api: httpx.AsyncClient, r: Round, n: int, meter: CpuMeter | None
) -> dict[str, Any]:
    idle_ms = await _idle_probe(api, r)
    subs = _subscribers(r, n)
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
    refused: list[int] = []
    base = int(time.time() * 1000) % 1_000_000 * 1000  # unique numbers across rounds

    sockets: dict[str, ChatSocket] = {}
    if r.chat_over == "ws":
        host_port = r.url.split("://", 1)[1]
        for sender in r.senders:
            sockets[sender] = ChatSocket(
                f"ws://{host_port}{BASE}/{r.stream_id}/ws?access_token={sender}"
            )
            await sockets[sender].open()

    async def post(k: int, sender: str) -> None:
        t0 = time.monotonic()
        if sender in sockets:
            status = await sockets[sender].send(k)
        else:
            resp = await api.post(
                f"{r.url}{BASE}/{r.stream_id}/chat",
                json={"message": f"bench {k}"},
                headers={"Authorization": f"Bearer {sender}"},
            )
            status = resp.status_code
        post_ms.append((time.monotonic() - t0) * 1000)
        if status == 201:
            sent[k] = t0
        else:
            refused.append(status)

    async def react(k: int, sender: str) -> None:
        resp = await api.post(
            f"{r.url}{BASE}/{r.stream_id}/reaction",
            json={"reaction": REACTIONS[k % len(REACTIONS)]},
            headers={"Authorization": f"Bearer {sender}"},
        )
        if resp.status_code != 201:
            refused.append(resp.status_code)

    plan = sorted(
        [(i / r.rate, 0, i) for i in range(int(r.rate * r.duration))]
        + [(i / r.reaction_rate, 1, i) for i in range(int(r.reaction_rate * r.duration))]
        if r.reaction_rate
        else [(i / r.rate, 0, i) for i in range(int(r.rate * r.duration))]
    )
    stop_probe = asyncio.Event()
    probe = asyncio.create_task(_probe(api, r, stop_probe))
    start = time.monotonic()
    tasks = []
    with meter or contextlib.nullcontext():
        for at, kind, i in plan:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            if kind == 0:
                tasks.append(asyncio.create_task(post(base + i, r.senders[i % len(r.senders)])))
            else:
                tasks.append(asyncio.create_task(react(i, r.reactors[i % len(r.reactors)])))
        await asyncio.gather(*tasks)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(len(s.received) < len(sent) for s in subs):
            await asyncio.sleep(0.2)
    stop_probe.set()
    busy_ms = await probe
    for sock in sockets.values():
        await sock.close()

    latencies = [
        (s.received[k] - t0) * 1000 for s in subs for k, t0 in sent.items() if k in s.received
    ]
    lost = sum(1 for s in subs for k in sent if k not in s.received)
    for s in subs:
        assert s.task is not None
        s.task.cancel()
    await asyncio.gather(*(s.task for s in subs if s.task), return_exceptions=True)
    await asyncio.sleep(1.0)  # let the server notice the disconnects
    cpu = dict(meter.cpu) if meter else {}
    return {
        "subscribers": n,
        "messages": len(sent),
        "deliveries": len(latencies),
        "p50_ms": pct(latencies, 0.50),
        "p99_ms": pct(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
        "lost": lost,
        "duplicates": sum(s.duplicates for s in subs),
        "refused": len(refused),
        "post_p50_ms": pct(post_ms, 0.5),
        "post_p99_ms": pct(post_ms, 0.99),
        "get_idle_p99_ms": pct(idle_ms, 0.99),
        "get_busy_p99_ms": pct(busy_ms, 0.99),
        "connect_s": opened_s,
        "load1": os.getloadavg()[0],
        "cpu_s": cpu,
        "cpu_ms_per_delivery": 1000 * sum(cpu.values()) / max(1, len(latencies)),
    }


def _row(label: str, res: dict[str, Any]) -> str:
    roles = " ".join(
        f"{k} {1000 * v / max(1, res['deliveries']):.3f}" for k, v in res["cpu_s"].items() if v
    )
    return (
        f"{label:<8}{res['subscribers']:>6} {res['messages']:>5} {res['deliveries']:>10} "
        f"{res['p50_ms']:>8.1f} {res['p99_ms']:>8.1f} {res['max_ms']:>8.1f} "
        f"{res['lost']:>5} {res['duplicates']:>4} {res['refused']:>4} "
        f"{res['post_p50_ms']:>7.1f}/{res['post_p99_ms']:<8.1f} "
        f"{res['get_idle_p99_ms']:>6.1f}/{res['get_busy_p99_ms']:<7.1f} "
        f"{res['load1']:>6.1f}  {res['cpu_ms_per_delivery']:.3f} ({roles})"
    )


HEADER = (
    f"{'target':<8}{'subs':>6} {'msgs':>5} {'deliveries':>10} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'max ms':>8} {'lost':>5} {'dup':>4} {'429+':>4} {'POST p50/p99 ms':>16} "
    f"{'GET p99 idle/busy':>17} {'load1':>6}  CPU ms per delivery (by role)"
)


async def _users(settings: Settings, rate: float, reaction_rate: float) -> dict[str, Any]:
    assert settings.jwt_secret
    tokens = TokenService(settings.jwt_secret, settings.jwt_audience)
    db = Database(settings, pool_size=2)

    async def user(name: str) -> str:
        async with db.acting(None) as conn:
            uid = await create_named_user(conn, f"{name}-{time.time_ns()}")
        return tokens.issue(uid, ttl_s=24 * 3600)

    people = {
        "owner": await user("owner"),
        "viewer": await user("viewer"),
        "prober": await user("prober"),
        "senders": [await user(f"sender{i}") for i in range(max(1, math.ceil(rate / 4)))],
        "reactors": [
            await user(f"reactor{i}") for i in range(max(1, math.ceil(reaction_rate / 15)))
        ],
    }
    await db.dispose()
    return people


async def bench(
    settings: Settings, targets: list[tuple[str, str]], args: argparse.Namespace
) -> None:
    people = await _users(settings, args.rate, args.reaction_rate)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    async with httpx.AsyncClient(timeout=60, limits=limits) as api:
        auth = {"Authorization": f"Bearer {people['owner']}"}
        print(HEADER, flush=True)
        for label, url in targets:
            resp = await api.post(f"{url}{BASE}/create", json={"title": "fan-out"}, headers=auth)
            sid = resp.json()["id"]
            await api.post(f"{url}{BASE}/start/{sid}", headers=auth)
            # Creating a stream embeds it in the background (the embedding actor loads
            # torch); let that finish so it does not land in the measurement.
            await wait_for_embedding(settings, sid)
            r = Round(
                url, sid, people["viewer"], people["prober"], people["senders"],
                people["reactors"], args.rate, args.reaction_rate, args.duration, args.transport,
                args.chat_over,
            )  # fmt: skip
            for n in args.subscribers:
                meter = (
                    CpuMeter(settings.database_url or "", settings.ray_address)
                    if CpuMeter.available()
                    else None
                )
                res = await one_round(api, r, n, meter)
                results[(label, n)] = res
                print(_row(label, res), flush=True)
            await api.post(f"{url}{BASE}/end/{sid}", headers=auth)
    _ratios(results, [label for label, _ in targets], args.subscribers)


def _ratios(
    results: dict[tuple[str, int], dict[str, Any]], labels: list[str], sizes: list[int]
) -> None:
    if len(labels) < 2:
        return
    a, b = labels[0], labels[1]
    print(f"\n{a} / {b}: delivery p99 ratio, CPU per delivery ratio")
    for n in sizes:
        x, y = results.get((a, n)), results.get((b, n))
        if x and y:
            p99 = x["p99_ms"] / y["p99_ms"] if y["p99_ms"] else float("nan")
            cpu = (
                x["cpu_ms_per_delivery"] / y["cpu_ms_per_delivery"]
                if y["cpu_ms_per_delivery"]
                else float("nan")
            )
            print(f"  {n:>6} subscribers: p99 {p99:.2f}x, CPU/delivery {cpu:.2f}x")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--rate", type=float, default=5.0, help="chat messages per second")
    parser.add_argument("--reaction-rate", type=float, default=0.0, help="reactions per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of chat per round")
    parser.add_argument("--transport", choices=("sse", "ws"), default="sse")
    parser.add_argument(
        "--chat-over",
        choices=("post", "ws"),
        default="post",
        help="senders chat by POST or over their own event WebSocket (acked frames)",
    )
    parser.add_argument(
        "--targets",
        default="serve,baseline",
        help="serve and/or baseline (the same app under uvicorn), in this order",
    )
    parser.add_argument(
        "--replicas", type=int, default=None, help="API replicas (default: as `lumalive up`)"
    )
    parser.add_argument(
        "--max-ongoing",
        type=int,
        default=None,
        help="max_ongoing_requests per replica (default: enough for the largest N)",
    )
    parser.add_argument("--ingress", choices=("proxy", "haproxy"), default=None)
    parser.add_argument("--haproxy", action="store_true", help="same as --ingress haproxy")
    parser.add_argument("--niceness", type=int, default=15, help="of both servers (as Ray's)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 subscribers, 4 s")
    args = parser.parse_args()
    if args.quick:
        args.subscribers, args.duration = [50], 4.0
        args.reaction_rate = args.reaction_rate or 20.0
    if args.haproxy:
        args.ingress = "haproxy"
    args.targets = [t for t in args.targets.split(",") if t]
    return args


def main() -> int:
    args = parse_args()
    os.environ["RAY_worker_niceness"] = str(args.niceness)  # noqa: SIM112 - Ray's spelling
    need = max(args.subscribers)
    max_ongoing = args.max_ongoing or max(1000, math.ceil((need + 50) / 0.9))
    update: dict[str, Any] = {"max_ongoing_requests": max_ongoing}
    if args.replicas:
        update["api_replicas"] = args.replicas
    if args.ingress:
        update["ingress"] = args.ingress
    data_dir = Path(tempfile.mkdtemp(prefix="lumalive-fanout-"))
    settings = Settings(
        data_dir=data_dir,
        api_port=free_port(),
        dashboard_port=free_port(),
        rtmp_port=free_port(),
        database_url=None,
        ray_address=None,
        max_realtime_per_user=0,  # every subscriber is the same viewer: no per-user cap
        **update,
    )
    ingress_env(settings)
    system = System(settings)
    print(f"starting the system ({update})", flush=True)
    import ray

    # As System.start_ray, but without forwarding Serve's per-request log lines here.
    ray.init(namespace="lumalive", include_dashboard=False, log_to_driver=False)
    settings = system.start()
    settings = settings.model_copy(update={"ray_address": ray.get_runtime_context().gcs_address})
    try:
        targets = []
        with contextlib.ExitStack() as stack:
            for t in args.targets:
                if t == "serve":
                    targets.append(("serve", settings.api_url))
                else:
                    log = data_dir / "baseline.log"
                    url = stack.enter_context(baseline_server(settings, log, args.niceness))
                    targets.append(("uvicorn", url))
            asyncio.run(bench(settings, targets, args))
    finally:
        system.stop()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
