"""Load benchmark for the HTTP API: N simulated viewers join a live stream, chat and
react at a fixed aggregate rate, then leave.

The same load runs against Ray Serve and against a baseline — the same FastAPI app
(`serve_app.app.create_app`) under plain uvicorn (`serve_app.standalone`), joined to the
same Ray cluster and Postgres — so the Serve/baseline ratio shows what Serve costs.

Open loop: every request has a due time fixed in advance and is sent then, whether or
not earlier ones have been answered; latency is measured from the due time, so a slow
server cannot hide its queueing (no coordinated omission). `client lag` reports how
late the generator itself was; if it is large the generator, not the server, was the
bottleneck.

After each run every chat message acknowledged with 201 is looked up in
`live_stream_chat` by id, over the admin connection (no RLS), and the missing ones are
reported as `lost`.

    .venv/bin/python -m bench.api_load                     # own system, Serve + baseline
    .venv/bin/python -m bench.api_load --viewers 200 --chat-rate 800 --repeat 2
    .venv/bin/python -m bench.api_load --api http://127.0.0.1:8000 \\
        --database-url postgresql://... [--ray-address 127.0.0.1:6379]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import httpx
from tqdm import tqdm

from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.store.users import create_named_user
from serve_app.sizing import replica_count

__all__ = ["main"]

REACTIONS = ["🔥", "❤️", "👍", "😂", "😮", "😢", "👏", "🎉", "💯", "😍"]
WORDS = [
    "hello",
    "gen",
    "one",
    "stream",
    "looks",
    "great",
    "love",
    "this",
    "quality",
    "wow",
    "nice",
    "play",
    "amazing",
    "what",
    "a",
    "moment",
    "hi",
    "from",
    "the",
    "chat",
    "again",
    "so",
    "smooth",
    "best",
    "today",
    "lol",
    "gg",
    "4K",
    "hype",
]
ENDPOINTS = ("join", "chat", "reaction", "leave")


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, order=True)
class Request:
    at: float  # seconds after the phase's start when it is due
    endpoint: str
    viewer: int


def steady(
    viewers: int, rate: float, duration: float, endpoint: str, rng: random.Random
) -> list[Request]:
    """`rate` requests/s in all, spread evenly over viewers: each viewer sends every
    viewers/rate seconds from a random phase, so the aggregate is smooth and no viewer
    bursts past its own per-user rate limit."""
    if rate <= 0:
        return []
    interval = viewers / rate
    out = []
    for v in range(viewers):
        t = rng.uniform(0, interval)
        while t < duration:
            out.append(Request(t, endpoint, v))
            t += interval
    return out


def spread(viewers: int, over_s: float, endpoint: str, rng: random.Random) -> list[Request]:
    """One request per viewer, due at random times in [0, over_s)."""
    return [Request(rng.uniform(0, over_s), endpoint, v) for v in range(viewers)]


# --------------------------------------------------------------------------- measuring


@dataclass
class EndpointStats:
    latencies: list[float] = field(default_factory=list)  # seconds, successes only
    shed_latencies: list[float] = field(default_factory=list)  # seconds, 429/503 answers
    errors: Counter[str] = field(default_factory=Counter)
    first_due: float = math.inf
    last_done: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def sent(self) -> int:
        return self.ok + sum(self.errors.values())

    @property
    def rps(self) -> float:
        """Successful responses per second over the span from the first due time to
        the last answer (so a backlog drained after the window lowers it)."""
        span = self.last_done - self.first_due
        return self.ok / span if span > 0 else 0.0

    def pct(self, q: float) -> float:
        """Nearest-rank percentile of successful latencies, in ms."""
        if not self.latencies:
            return math.nan
        xs = sorted(self.latencies)
        return 1000 * xs[min(len(xs) - 1, max(0, math.ceil(q / 100 * len(xs)) - 1))]


@dataclass
class RunResult:
    target: str
    label: str
    stream_id: str
    duration_s: float
    stats: dict[str, EndpointStats]
    client_lag_ms: tuple[float, float]  # p99, max: how late requests left the generator
    acked_chat_ids: list[str]
    lost: int | None = None
    rows_in_stream: int | None = None
    actor: dict[str, Any] | None = None
    cpu: CpuMeter | None = None


# --------------------------------------------------------------------------- the load


@dataclass
class Viewer:
    id: uuid.UUID
    headers: dict[str, str]


@dataclass
class People:
    owner: Viewer  # owns the streams
    warm_up: Viewer  # warms each server up before a run
    viewers: list[Viewer]


class Load:
    """Drives one run against one API base URL."""

    def __init__(self, base: str, people: People, args: argparse.Namespace, seed: int) -> None:
        self.base = base.rstrip("/")
        self.owner = people.owner
        self.warm_user = people.warm_up
        self.viewers = people.viewers
        self.args = args
        self.rng = random.Random(seed)
        self.stats = {e: EndpointStats() for e in ENDPOINTS}
        self.lags: list[float] = []
        self.acked: list[str] = []

    async def run(self, label: str, target: str, meter: CpuMeter | None = None) -> RunResult:
        """Warm up, then the measured phases (joins, chat and reactions, leaves)."""
        a = self.args
        timeout = aiohttp.ClientTimeout(total=a.timeout)
        connector = aiohttp.TCPConnector(limit=a.connections, limit_per_host=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            self.http = http
            await self._warm_up()
            sid = await self._live_stream()
            n = len(self.viewers)
            with meter or _nothing():
                await self._phase(f"{label} join", spread(n, a.ramp, "join", self.rng), sid)
                main = steady(n, a.chat_rate, a.duration, "chat", self.rng) + steady(
                    n, a.reaction_rate, a.duration, "reaction", self.rng
                )
                await self._phase(f"{label} chat+react", sorted(main), sid)
                await self._phase(f"{label} leave", spread(n, a.ramp, "leave", self.rng), sid)
            lags = sorted(self.lags)
            lag = (1000 * lags[int(0.99 * (len(lags) - 1))], 1000 * lags[-1]) if lags else (0, 0)
            result = RunResult(
                target, label, sid, a.duration, self.stats, lag, self.acked, cpu=meter
            )
            result.actor = actor_stats(sid)
            async with http.post(
                f"{self.base}/api/live-streaming/end/{sid}", headers=self.owner.headers
            ) as r:
                if r.status != 200:
                    print(
                        f"warning: ending the stream gave {r.status}: {await r.text()}",
                        file=sys.stderr,
                    )
        return result

    async def _warm_up(self) -> None:
        """One viewer's whole visit to a throw-away stream, so one-time costs of the
        serving process (its first actor call, model loads such as the stream
        embeddings that a stream's creation starts and /recommended waits for) are
        not in the measured run. The measured viewers stay cold: their first
        requests are measured as they are."""
        sid = await self._live_stream()
        url = f"{self.base}/api/live-streaming"
        user = self.warm_user.headers
        calls: list[tuple[str, str, dict[str, str] | None]] = [("POST", f"{sid}/join", None)]
        for i in range(5):
            calls += [
                ("POST", f"{sid}/chat", {"message": f"warm-up message {i}"}),
                ("POST", f"{sid}/reaction", {"reaction": REACTIONS[i]}),
            ]
        calls += [("GET", "recommended", None), ("POST", f"{sid}/leave", None)]
        for method, path, body in calls:
            async with self.http.request(method, f"{url}/{path}", json=body, headers=user) as r:
                await r.read()
        async with self.http.post(f"{url}/end/{sid}", headers=self.owner.headers) as r:
            await r.read()

    async def _live_stream(self) -> str:
        body = {"title": "api load benchmark", "quality": "1080p", "tags": ["bench"]}
        async with self.http.post(
            f"{self.base}/api/live-streaming/create", json=body, headers=self.owner.headers
        ) as r:
            assert r.status == 201, await r.text()
            sid = (await r.json())["id"]
        async with self.http.post(
            f"{self.base}/api/live-streaming/start/{sid}", headers=self.owner.headers
        ) as r:
            assert r.status == 200, await r.text()
        return sid

    async def _phase(self, name: str, plan: list[Request], sid: str) -> None:
        """Send every request at its due time; wait for the answers."""
        plan.sort()
        bar = tqdm(
            total=len(plan),
            desc=name,
            unit="req",
            leave=False,
            mininterval=0.5,
            disable=not self.args.progress,
            dynamic_ncols=True,
        )
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter() + 0.05
        for req in plan:
            due = start + req.at
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._send(req, due, sid, bar))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
        bar.close()

    async def _send(self, req: Request, due: float, sid: str, bar: tqdm) -> None:
        viewer = self.viewers[req.viewer]
        url = f"{self.base}/api/live-streaming/{sid}/{req.endpoint}"
        body: dict[str, str] | None = None
        if req.endpoint == "chat":
            body = {"message": " ".join(self.rng.choices(WORDS, k=self.rng.randint(2, 8)))}
        elif req.endpoint == "reaction":
            body = {"reaction": self.rng.choice(REACTIONS)}
        st = self.stats[req.endpoint]
        st.first_due = min(st.first_due, due)
        self.lags.append(max(0.0, time.perf_counter() - due))
        try:
            async with self.http.post(url, json=body, headers=viewer.headers) as r:
                status = r.status
                payload = await r.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            status, payload = 0, type(exc).__name__.encode()
        done = time.perf_counter()
        st.last_done = max(st.last_done, done)
        expected = 201 if req.endpoint in ("chat", "reaction") else 200
        if status == expected:
            st.latencies.append(done - due)
            if req.endpoint == "chat":
                self.acked.append(json.loads(payload)["id"])
        else:
            st.errors[str(status) if status else payload.decode()] += 1
            if status in (429, 503):
                st.shed_latencies.append(done - due)
        bar.update()


def actor_stats(stream_id: str) -> dict[str, Any] | None:
    """The stream actor's batching counters, when this process is a Ray driver."""
    try:
        import ray

        from actors import stream_actor

        if not ray.is_initialized():
            return None
        handle = stream_actor.lookup(uuid.UUID(stream_id))
        return (
            cast("dict[str, Any]", ray.get(handle.stats.remote(), timeout=10)) if handle else None
        )
    except Exception:  # noqa: BLE001 - diagnostics only
        return None


# --------------------------------------------------------------------------- CPU


class CpuMeter:
    """CPU seconds spent by each role while a run lasts, sampled from /proc (Linux only).

    On a shared machine, wall-clock figures depend on the neighbours; CPU time per
    request does much less, and shows which hop costs what: Serve's HTTP proxy (or
    HAProxy), the Serve replica, the baseline's uvicorn process, the stream actor,
    Postgres (the backends of the postmaster whose socket directory is the database
    URL's host) and this load generator. Both servers are counted in every run, so
    whatever the idle one does shows too. `machine` is the busy share of all CPUs,
    neighbours included.
    """

    ROLES = ("proxy", "replica", "baseline", "actor", "postgres", "client")

    def __init__(self, database_url: str, gcs_address: str | None, period_s: float = 0.5) -> None:
        self._pg_dir = _socket_dir(database_url)
        # Ray workers are children of their node's raylet, whose command line names the
        # cluster's GCS; other Ray clusters on the machine are not ours. Unknown (--api
        # without --ray-address): every Ray worker on the machine counts.
        self._gcs = f"--gcs-address={gcs_address} " if gcs_address else None
        self._period = period_s
        self._hz = os.sysconf("SC_CLK_TCK")
        self._last: dict[int, float] = {}  # pid -> CPU seconds at the last sample
        self.cpu: defaultdict[str, float] = defaultdict(float)  # role -> CPU seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._machine0 = (0, 0)
        self.machine_busy = math.nan
        self.wall = 0.0

    @staticmethod
    def available() -> bool:
        return Path("/proc/stat").exists()

    def __enter__(self) -> CpuMeter:
        self._machine0 = _machine_jiffies()
        self._t0 = time.perf_counter()
        self._sample(record=False)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._sample(record=True)
        self.wall = time.perf_counter() - self._t0
        busy0, total0 = self._machine0
        busy1, total1 = _machine_jiffies()
        self.machine_busy = (busy1 - busy0) / max(1, total1 - total0)

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            self._sample(record=True)

    def _sample(self, record: bool) -> None:
        procs = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                raw = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / self._hz
            procs[int(entry.name)] = (int(fields[1]), cpu, raw.decode(errors="replace"))
        postmasters = {
            pid
            for pid, (_, _, cmd) in procs.items()
            if self._pg_dir and "bin/postgres" in cmd and self._pg_dir in cmd
        }
        roots = {os.getpid()} | {
            pid
            for pid, (_, _, cmd) in procs.items()
            if "raylet/raylet" in cmd and (self._gcs is None or self._gcs in cmd)
        }
        for pid, (ppid, cpu, cmd) in procs.items():
            before = self._last.get(pid)
            self._last[pid] = cpu
            if not record:
                continue
            role = self._role(pid, ppid, cmd, postmasters)
            if role and (role == "postgres" or self._descends(pid, roots, procs)):
                self.cpu[role] += cpu - (before or 0.0)

    @staticmethod
    def _descends(pid: int, roots: set[int], procs: dict[int, tuple[int, float, str]]) -> bool:
        for _ in range(8):
            if pid in roots:
                return True
            if pid not in procs:
                return False
            pid = procs[pid][0]
        return False

    @staticmethod
    def _role(pid: int, ppid: int, cmd: str, postmasters: set[int]) -> str | None:
        if pid == os.getpid():
            return "client"
        if cmd.startswith("ray::ProxyActor") or "haproxy" in cmd.split(" ", 1)[0]:
            return "proxy"
        if cmd.startswith("ray::ServeReplica"):
            return "replica"
        if "serve_app.standalone" in cmd:
            return "baseline"
        if "StreamActor" in cmd:
            return "actor"
        if ppid in postmasters or pid in postmasters:
            return "postgres"
        return None

    def line(self, requests: int) -> str:
        per = ", ".join(
            f"{role} {1000 * self.cpu[role] / max(1, requests):.2f}"
            for role in self.ROLES
            if self.cpu[role] > 0
        )
        total = sum(self.cpu.values())
        return (
            f"  CPU ms per request: {per}; total {1000 * total / max(1, requests):.2f}"
            f"  (machine {100 * self.machine_busy:.0f}% busy, {os.cpu_count()} CPUs, "
            f"this system {100 * total / (self.wall * (os.cpu_count() or 1)):.0f}%)"
        )


def _socket_dir(database_url: str) -> str | None:
    """The unix-socket directory in a libpq URL (`?host=/path`), if any."""
    from urllib.parse import parse_qs, urlsplit

    host = parse_qs(urlsplit(database_url).query).get("host", [None])[0]
    return host if host and host.startswith("/") else None


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


# --------------------------------------------------------------------------- checks


def admin_dsn(url: str) -> str:
    """A libpq DSN from a SQLAlchemy URL (the admin user, no SET ROLE, so no RLS)."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def verify(result: RunResult, database_url: str) -> None:
    """Every acknowledged chat message must be in Postgres."""
    import psycopg

    with psycopg.connect(admin_dsn(database_url)) as conn:
        found = conn.execute(
            "SELECT count(*) FROM live_stream_chat WHERE id = ANY(%s::uuid[])",
            (result.acked_chat_ids,),
        ).fetchone()
        rows = conn.execute(
            "SELECT count(*) FROM live_stream_chat WHERE stream_id = %s", (result.stream_id,)
        ).fetchone()
    assert found is not None and rows is not None
    result.lost = len(result.acked_chat_ids) - found[0]
    result.rows_in_stream = rows[0]


# --------------------------------------------------------------------------- output


def fmt(x: float, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def print_run(r: RunResult) -> None:
    print(f"\n{r.label}  (stream {r.stream_id})")
    print(
        f"  {'endpoint':<9}{'sent':>7}{'ok':>7}{'req/s':>8}{'p50':>8}{'p95':>8}{'p99':>8}"
        f"{'max':>8}  errors (latency ms)"
    )
    for name in ENDPOINTS:
        s = r.stats[name]
        errs = ", ".join(f"{k}x{v}" for k, v in s.errors.most_common()) or "-"
        print(
            f"  {name:<9}{s.sent:>7}{s.ok:>7}{fmt(s.rps):>8}{fmt(s.pct(50)):>8}"
            f"{fmt(s.pct(95)):>8}{fmt(s.pct(99)):>8}{fmt(s.pct(100)):>8}  {errs}"
        )
    lost = "not checked" if r.lost is None else str(r.lost)
    line = (
        f"  lost: {lost} (of {len(r.acked_chat_ids)} acknowledged chat messages; "
        f"{r.rows_in_stream} rows in the stream)  client lag p99/max "
        f"{r.client_lag_ms[0]:.1f}/{r.client_lag_ms[1]:.1f} ms"
    )
    if r.actor and r.actor.get("batches"):
        line += f"  actor: {r.actor['writes'] / r.actor['batches']:.1f} writes/transaction"
    print(line)
    if r.cpu:
        # Per answered request (HTTP status received). With timeouts the server goes on
        # working after the client gave up, so the figure only means much without them.
        answered = sum(
            s.ok + sum(n for k, n in s.errors.items() if k.isdigit()) for s in r.stats.values()
        )
        timeouts = sum(s.sent for s in r.stats.values()) - answered
        print(r.cpu.line(answered) + (f"  [{timeouts} unanswered: overloaded]" if timeouts else ""))
        chats = r.stats["chat"].ok
        if chats:
            # The steadier figure on a shared machine: all CPU of the run (joins,
            # reactions, sheds included) over the chat messages it stored.
            total = sum(r.cpu.cpu.values())
            print(f"  CPU ms per stored chat message (all roles): {1000 * total / chats:.2f}")
    print_shedding(r)


def print_shedding(r: RunResult) -> None:
    """Admission: what was accepted (and how fast), what was shed at once (429/503)."""
    s = r.stats["chat"]
    shed = sum(n for k, n in s.errors.items() if k in ("429", "503"))
    if not shed:
        return
    xs = sorted(s.shed_latencies)
    p99 = 1000 * xs[min(len(xs) - 1, math.ceil(0.99 * len(xs)) - 1)] if xs else math.nan
    kinds = ", ".join(f"{k}x{n}" for k, n in s.errors.items() if k in ("429", "503"))
    unanswered = sum(n for k, n in s.errors.items() if not k.isdigit())
    print(
        f"  admission (chat): offered {s.sent / r.duration_s:.1f}/s, accepted {fmt(s.rps)}/s "
        f"p99 {fmt(s.pct(99))} ms; shed {shed} ({kinds}) answered in p99 {fmt(p99)} ms; "
        f"{unanswered} unanswered"
    )


def print_comparison(serve: RunResult, base: RunResult) -> None:
    print(f"\nServe / baseline  ({serve.label} vs {base.label})")
    print(
        f"  {'endpoint':<9}{'req/s S':>9}{'req/s B':>9}{'ratio':>7}"
        f"{'p99 S':>9}{'p99 B':>9}{'ratio':>7}"
    )
    for name in ENDPOINTS:
        s, b = serve.stats[name], base.stats[name]
        rr = s.rps / b.rps if b.rps else math.nan
        pr = s.pct(99) / b.pct(99) if b.ok and s.ok else math.nan
        print(
            f"  {name:<9}{fmt(s.rps):>9}{fmt(b.rps):>9}{fmt(rr, 2):>7}"
            f"{fmt(s.pct(99)):>9}{fmt(b.pct(99)):>9}{fmt(pr, 2):>7}"
        )


def to_json(r: RunResult) -> dict[str, Any]:
    return {
        "target": r.target,
        "label": r.label,
        "stream_id": r.stream_id,
        "lost": r.lost,
        "acked_chat": len(r.acked_chat_ids),
        "rows": r.rows_in_stream,
        "client_lag_ms": r.client_lag_ms,
        "actor": r.actor,
        "cpu_s": dict(r.cpu.cpu) if r.cpu else None,
        "machine_busy": r.cpu.machine_busy if r.cpu else None,
        "endpoints": {
            n: {
                "sent": s.sent,
                "ok": s.ok,
                "rps": s.rps,
                "p50": s.pct(50),
                "p95": s.pct(95),
                "p99": s.pct(99),
                "max": s.pct(100),
                "errors": dict(s.errors),
            }
            for n, s in r.stats.items()
        },
    }


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """`settings` as the environment variables that `Settings()` reads back."""
    env = {}
    for name, f in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None:
            continue
        key = (
            f.validation_alias
            if isinstance(f.validation_alias, str)
            else f"LUMALIVE_{name.upper()}"
        )
        # Sequences as JSON, the way pydantic-settings reads them back.
        env[key] = json.dumps(list(value)) if isinstance(value, tuple | list) else str(value)
    return env


@contextmanager
def baseline_server(settings: Settings, log_path: Path, niceness: int) -> Iterator[str]:
    """`serve_app.standalone` in a subprocess on a free port; yields its base URL.

    It runs at the niceness Ray gives its workers (15 unless RAY_worker_niceness says
    otherwise), so that on a busy machine neither server gets more of the CPU."""
    port = free_port()
    env = {**os.environ, **settings_env(settings.model_copy(update={"api_port": port}))}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serve_app.standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, niceness),
        )
    url = f"http://{settings.api_host}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"baseline exited with {proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"baseline did not answer; see {log_path}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def make_people(settings: Settings, n: int) -> People:
    assert settings.jwt_secret
    tokens = TokenService(settings.jwt_secret, settings.jwt_audience)
    db = Database(settings, pool_size=2)
    tag = uuid.uuid4().hex[:6]
    people = []
    try:
        async with db.acting(None) as conn:
            for i in range(n + 2):
                uid = await create_named_user(conn, f"bench-{tag}-{i}")
                people.append(
                    Viewer(uid, {"Authorization": f"Bearer {tokens.issue(uid, ttl_s=24 * 3600)}"})
                )
    finally:
        await db.dispose()
    return People(people[0], people[1], people[2:])


def run_load(
    base: str,
    people: People,
    args: argparse.Namespace,
    label: str,
    target: str,
    seed: int,
    meter: CpuMeter | None = None,
) -> RunResult:
    load = Load(base, people, args, seed)
    return _run(load.run(label, target, meter))


def _run(coro: Any) -> Any:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except ImportError:
        return asyncio.run(coro)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.api_load",
        description="N simulated viewers join a live stream, chat and react at a fixed "
        "aggregate rate (open loop: requests leave at their due time, latency is "
        "measured from it), then leave; against Ray Serve and against the same "
        "FastAPI app under plain uvicorn. Prints requests/s and p50/p95/p99 per "
        "endpoint, the Serve/baseline ratios, CPU time per request by process, and "
        "checks that every acknowledged chat message is in Postgres (exit 1 if not).",
    )
    g = p.add_argument_group("load")
    g.add_argument(
        "--viewers",
        type=int,
        default=100,
        help="simulated viewers, one user each (default %(default)s)",
    )
    g.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="seconds of chat and reactions (default %(default)s)",
    )
    g.add_argument(
        "--chat-rate",
        type=float,
        default=600.0,
        help="chat messages/s, all viewers together (default %(default)s)",
    )
    g.add_argument(
        "--reaction-rate",
        type=float,
        default=100.0,
        help="reactions/s, all viewers together (default %(default)s)",
    )
    g.add_argument(
        "--ramp",
        type=float,
        default=2.0,
        help="joins, and later leaves, are spread over this many seconds (default %(default)s)",
    )
    g.add_argument(
        "--connections",
        type=int,
        default=256,
        help="HTTP keep-alive connections (default %(default)s)",
    )
    g.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="per-request timeout in seconds (default %(default)s)",
    )
    g.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per target, a fresh stream each (default %(default)s)",
    )
    g.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    g.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 20 viewers, 5 s of 40 chat/s + 10 reactions/s (overrides those)",
    )
    g.add_argument(
        "--overload",
        type=float,
        metavar="CAPACITY",
        help="the overload scenario: 500 viewers offer 3x CAPACITY chat messages/s (no "
        "reactions), at most 300 requests open on the client, 10 s client timeout; "
        "prints what was accepted (rate, p99) and shed (429/503, how fast)",
    )
    g = p.add_argument_group("targets")
    g.add_argument(
        "--targets",
        default="serve,baseline",
        help="comma list of serve and baseline, in the order run (default %(default)s)",
    )
    g.add_argument(
        "--api",
        metavar="URL",
        help="benchmark a running system instead of starting one; its JWT secret "
        "comes from LUMALIVE_JWT_SECRET or LUMALIVE_DATA_DIR, as for "
        "`lumalive token`",
    )
    g.add_argument(
        "--database-url",
        metavar="URL",
        help="with --api (required): the system's admin DATABASE_URL, for creating "
        "users and the lost-message check",
    )
    g.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help="with --api: the system's Ray GCS address, which the baseline joins "
        "(no baseline without it)",
    )
    g = p.add_argument_group("the system the benchmark starts (not with --api)")
    g.add_argument(
        "--replicas",
        type=int,
        help="Serve replicas of the API (default: as `lumalive up` picks for this machine)",
    )
    g.add_argument(
        "--ingress",
        choices=("proxy", "haproxy"),
        help="Serve's Python proxy or HAProxy (default: Settings, as `lumalive up`)",
    )
    g.add_argument(
        "--max-inflight",
        type=int,
        help="plain requests in progress per API process before 503 overloaded "
        "(default: Settings; 0: no cap)",
    )
    g.add_argument(
        "--max-ongoing", type=int, help="Serve max_ongoing_requests per replica (default: Settings)"
    )
    g.add_argument(
        "--db-pool-size", type=int, help="connection pool of each API process (default: Settings)"
    )
    g.add_argument(
        "--chat-limit",
        type=float,
        help="per-user chat rate limit in messages/s (default: the Settings value, "
        "raised to twice each viewer's planned rate if that is higher; the "
        "burst is 2 s of it). Reactions get the same treatment",
    )
    g.add_argument(
        "--serve-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for Ray and Serve, set before Ray starts, e.g. "
        "RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (repeatable)",
    )
    g.add_argument(
        "--niceness",
        type=int,
        default=15,
        help="scheduling niceness of the servers: Ray's workers get it through "
        "RAY_worker_niceness (Ray's own default is 15) and so does the baseline "
        "process, so that both compete alike with other load "
        "(default %(default)s)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    g.add_argument(
        "--no-cpu",
        dest="cpu",
        action="store_false",
        help="do not sample CPU time per process from /proc",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.viewers, args.duration, args.chat_rate, args.reaction_rate = 20, 5.0, 40.0, 10.0
        args.ramp = 1.0
    if args.overload:
        args.viewers, args.chat_rate, args.reaction_rate = 500, 3 * args.overload, 0.0
        args.timeout, args.connections = 10.0, 300
        if args.quick:
            args.viewers = 100
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not args.targets or not set(args.targets) <= {"serve", "baseline"}:
        p.error("--targets takes serve and/or baseline")
    if args.api and not args.database_url:
        p.error("--api needs --database-url, for creating users and the lost-message check")
    if min(args.viewers, args.repeat) < 1 or args.duration <= 0:
        p.error("--viewers, --repeat and --duration must be positive")
    return args


def bench_settings(args: argparse.Namespace, data_dir: Path) -> Settings:
    """Settings for a system the benchmark starts: free ports, a temp data dir, and a
    chat/reaction rate limit that admits the planned per-viewer rates."""
    base = Settings(data_dir=data_dir, database_url=None, ray_address=None)
    per_viewer_chat = args.chat_rate / args.viewers
    per_viewer_react = args.reaction_rate / args.viewers
    chat = args.chat_limit or max(base.chat_rate_per_s, 2 * per_viewer_chat)
    react = max(base.reaction_rate_per_s, 2 * per_viewer_react)
    update: dict[str, Any] = {
        "api_port": free_port(),
        "dashboard_port": free_port(),
        "rtmp_port": free_port(),
        "chat_rate_per_s": chat,
        "chat_burst": max(base.chat_burst, math.ceil(2 * chat)),
        "reaction_rate_per_s": react,
        "reaction_burst": max(base.reaction_burst, math.ceil(2 * react)),
    }
    if args.replicas:
        update["api_replicas"] = args.replicas
    if args.max_ongoing:
        update["max_ongoing_requests"] = args.max_ongoing
    if args.db_pool_size:
        update["db_pool_size"] = args.db_pool_size
    if args.ingress:
        update["ingress"] = args.ingress
    if args.max_inflight is not None:
        update["api_max_inflight"] = args.max_inflight
    return base.model_copy(update=update)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lumalive-bench-") as tmp:
        if args.api:
            settings = Settings(
                database_url=args.database_url, ray_address=args.ray_address
            ).with_secret()
            if "baseline" in args.targets and not args.ray_address:
                print("no --ray-address: no baseline", file=sys.stderr)
                args.targets = [t for t in args.targets if t != "baseline"]
            return _bench(args, settings, args.api, Path(tmp), own_system=False)
        return _with_own_system(args, Path(tmp))


def _with_own_system(args: argparse.Namespace, tmp: Path) -> int:
    """Start Postgres, Ray and Serve as `lumalive up` does (cluster.launcher.System), on
    free ports in a temporary data directory; benchmark; stop them."""
    os.environ["RAY_worker_niceness"] = str(args.niceness)  # noqa: SIM112 - Ray's spelling
    for kv in args.serve_env:
        key, _, value = kv.partition("=")
        os.environ[key] = value
    import ray
    from ray import serve

    from cluster.launcher import System, ingress_env

    system = System(bench_settings(args, tmp))
    print("starting Postgres, Ray and Serve…", file=sys.stderr)
    ingress_env(system.settings)  # as System.start_ray: before Ray starts
    try:
        # Ray as System.start_ray starts it, but without forwarding every worker's log
        # lines (Serve's access log: a line per request) to this process, which is also
        # the load generator.
        ray.init(
            namespace="lumalive",
            include_dashboard=True,
            log_to_driver=False,
            dashboard_host=system.settings.dashboard_host,
            dashboard_port=system.settings.dashboard_port,
        )
        settings = system.start()
        settings = settings.model_copy(
            update={"ray_address": ray.get_runtime_context().gcs_address}
        )
        return _bench(args, settings, settings.api_url, tmp, own_system=True)
    finally:
        system.stop()
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()


def _describe(args: argparse.Namespace, settings: Settings, own_system: bool) -> str:
    per_chat, per_react = args.chat_rate / args.viewers, args.reaction_rate / args.viewers
    text = (
        f"{args.viewers} viewers, {args.duration:g} s of {args.chat_rate:g} chat/s + "
        f"{args.reaction_rate:g} reactions/s (open loop; {per_chat:g} and {per_react:g}/s "
        f"per viewer); joins and leaves over {args.ramp:g} s."
    )
    if not own_system:
        return text + (
            f"\nThe server's per-user limits must admit {per_chat:g} chat/s and "
            f"{per_react:g} reactions/s per viewer, or 429s count as errors."
        )
    return text + (
        f"\nPer-user limits for the benchmark: chat {settings.chat_rate_per_s:g}/s burst "
        f"{settings.chat_burst}, reactions {settings.reaction_rate_per_s:g}/s burst "
        f"{settings.reaction_burst}. Serve: {replica_count(settings)} replica(s), "
        f"ingress {settings.ingress}, max_ongoing_requests {settings.max_ongoing_requests}, "
        f"max_inflight {settings.api_max_inflight}; API db_pool_size "
        f"{settings.db_pool_size}; niceness {args.niceness}"
        + (f"; {' '.join(args.serve_env)}" if args.serve_env else "")
        + "."
    )


def _bench(
    args: argparse.Namespace, settings: Settings, serve_url: str, tmp: Path, own_system: bool
) -> int:
    assert settings.database_url
    people = _run(make_people(settings, args.viewers))
    print(_describe(args, settings, own_system))
    results: list[RunResult] = []
    ctx = (
        baseline_server(settings, tmp / "baseline.log", args.niceness)
        if "baseline" in args.targets
        else _nothing()
    )
    with ctx as base_url:
        for i in range(args.repeat):
            for target in args.targets:
                url = serve_url if target == "serve" else base_url
                assert url is not None
                label = f"{'Ray Serve' if target == 'serve' else 'uvicorn baseline'} #{i + 1}"
                meter = (
                    CpuMeter(settings.database_url, settings.ray_address)
                    if args.cpu and CpuMeter.available()
                    else None
                )
                r = run_load(url, people, args, label, target, seed=args.seed + i, meter=meter)
                verify(r, settings.database_url)
                print_run(r)
                results.append(r)
    serve = [r for r in results if r.target == "serve"]
    base = [r for r in results if r.target == "baseline"]
    for s, b in zip(serve, base, strict=False):
        print_comparison(s, b)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "runs": [to_json(r) for r in results],
                },
                indent=2,
            )
        )
    lost = sum(r.lost or 0 for r in results)
    print(f"\nlost: {lost} (acknowledged chat messages missing from Postgres, all runs)")
    return 1 if lost else 0


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    sys.exit(main())
