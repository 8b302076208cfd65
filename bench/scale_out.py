"""Scale-out: the same publish against 1, 2 and 3 worker nodes of one CPU each.

A Ray cluster on this machine (`tests.utils.ray_nodes.LocalCluster`): a head with the
edge resource (API, RTMP ingest, segmenter, publisher; no CPUs for media; Postgres
beside it) and worker nodes started with `--num-cpus=1 --resources='{"media_encode":
1}'`, so each node is one encoder whatever the machine has. Each node count gets a
cluster and a `lumalive up --detach` of its own (`LUMALIVE_MEDIA_WORKERS` = the nodes:
a larger pool on fewer nodes would hand segments to workers that cannot be placed),
then a short warm-up publish (every worker started) before the measured one.

Each run publishes the same source, unpaced (a publisher's backlog: every segment is
cut at once, so the pool is the limit), to a stream of its own in latency mode
`normal` (in `low`, the head's streaming encoder makes the rungs up to 720p and the
pool would not be what is measured), with backpressure off (shedding would make the
work per segment depend on the node count), and reads the stream's rows once all of
them are published:

    segments/s     source segments published in every rung over the wall time from the
                   publish's start to the last rung's last publication (the lowest rung
                   is published first and apart, `actors.lowest_first`; until the
                   seventh session this bench timed only it: the lowest rungs' work,
                   not the ladder's)
    x real time    source seconds over that wall time
    latency        per segment, cut -> its lowest rung published
                   (`stream_quality.latency_ms`), p50/p95
    per node       segments/s over the 1-node run's, divided by the nodes (the aim:
                   0.85 or better)

    steady         segments/s from the first publication to the last rung's last (the publish's
                   start left out), and per node: the pool's own throughput
    first publication  how long after the publish's start the first segment was
                   published (the stream's start: its actor, the first jobs)

and where a job's time went (`stream_segments.timings`, medians over the pool's jobs;
a 720p ladder is split in two jobs per segment, `actors.lowest_first`): queue,
encode, store, the worker's CPU. Before the measured run the worker nodes must be
quiet (`settle`): actors that are not media work once landed on media nodes (below).

**The machine, not Ray, can be the limit.** On a 2-core box, three one-CPU nodes plus
the head share two cores: uncapped, it measured 0.71 per node with 2 nodes and 0.50
with 3, the machine's figure. `--cpu-quota Q` caps every worker node at Q cores (its
`ray start`, raylet and workers in a cgroup of their own, `tests.utils.cpu_cgroup`),
so each node is what a separate machine of Q cores would be, *as long as the caps
together (N x Q) stay under the cores the head and everything else leave free*. The
table prints, per run, the nodes' CPU use (cores, against N x Q), the share of CFS
periods in which they were throttled (near 1: the cap, not the machine, bounded
them), the machine's idle cores during the run and its load average: if the nodes used
less than N x Q while the machine had no idle cores, the machine was the limit again
and the per-node figure says nothing about Ray.

**What it found first (2026-11-28, `--cpu-quota 0.5`, 1280x720 source):** the
non-media actors (`StreamActor`, `embedder`, the webhook dispatcher; `num_cpus=0`)
were placed on the media nodes as often as not, taking CPU the scheduler counted as
the encoder's (the embedder's model load ~70 s under a 0.5-core cap) and delaying a
stream's first segment by 3-4 s. They are now pinned to the edge resource with the
API (`actors.placement.control_options`); the `other Ray processes` lines still name
whatever else runs on a media node, so a regression shows.

    .venv/bin/python -m bench.scale_out                  # 1, 2, 3 nodes, uncapped
    .venv/bin/python -m bench.scale_out --cpu-quota 0.5  # each node a 0.5-core machine
    .venv/bin/python -m bench.scale_out --quick          # smoke: 1 and 2 nodes, 8 s
    .venv/bin/python -m bench.scale_out --overload

`--overload` adds one run paced at real time on a single node with a ladder heavier
than one node (`bench.overload.run`, the backpressure benchmark's): which rungs were
shed and for how long, and whether the lowest rung missed a segment.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from psycopg.rows import dict_row

from bench.ffmpeg_source import make_source, publish
from tests.utils.cpu_cgroup import CgroupUnavailable
from tests.utils.ray_nodes import Deployed, LocalCluster, deploy

EDGE, ENCODE = "lumalive_edge", "media_encode"
API = "/api/live-streaming"
STAGES = ("queue", "encode", "store", "cpu")


@dataclass(frozen=True)
class Machine:
    """What the machine gave a run: `node_cores` (the capped nodes' CPU seconds over
    the wall; None uncapped or without cpuacct), `throttled` (their CFS periods
    throttled, as a share), `idle_cores` (machine-wide) and the 1-minute load."""

    node_cores: float | None
    throttled: float | None
    idle_cores: float
    load_1m: float
    by_kind: dict[str, float]  # the nodes' processes' CPU (cores): media / raylet / other
    others: dict[str, float]  # "other" by process (its command's first words), cores


@dataclass(frozen=True)
class Run:
    nodes: int
    segments: int
    renditions: int
    source_s: float
    wall_s: float
    latencies_ms: list[float]
    retries: int
    workers: int
    stages_ms: dict[str, float]
    machine: Machine
    steady_s: float  # first publication -> last (the publish's start left out)

    @property
    def per_s(self) -> float:
        return self.segments / self.wall_s

    @property
    def steady_per_s(self) -> float:
        return (self.segments - 1) / max(1e-3, self.steady_s)

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] / 1000


class Sampler:
    """The machine's and the capped nodes' CPU between `__init__` and `done`."""

    def __init__(self, cluster: LocalCluster) -> None:
        self._caps = [n.cgroup for n in cluster.nodes if n.cgroup is not None]
        self._t, self._idle = time.monotonic(), self._machine_idle()
        self._usage = [c.usage_s() for c in self._caps]
        self._throttle = [c.throttled() for c in self._caps]
        self._cluster, self._procs = cluster, self._node_cpu(cluster)

    @staticmethod
    def _machine_idle() -> float:
        t = psutil.cpu_times()
        return float(t.idle + getattr(t, "iowait", 0.0))

    @staticmethod
    def _node_cpu(cluster: LocalCluster) -> dict[int, tuple[str, str, float]]:
        """Per process of the worker nodes: its kind, what it is and CPU seconds so far."""
        out = {}
        for node in cluster.nodes:
            for p in node.processes() if node.name != "head" else ():
                with contextlib.suppress(psutil.Error):
                    t, cmd = p.cpu_times(), " ".join(p.cmdline())
                    kind = "media" if "MediaWorker" in cmd else "other"
                    what = " ".join(Path(w).name for w in p.cmdline()[:2])[:60]
                    kind = "raylet" if p.name() == "raylet" else kind
                    out[p.pid] = (kind, what, t.user + t.system)
        return out

    def done(self, wall_s: float) -> Machine:
        idle = (self._machine_idle() - self._idle) / (time.monotonic() - self._t)
        used = [
            (u1 - u0) if u1 is not None and u0 is not None else None
            for u1, u0 in zip((c.usage_s() for c in self._caps), self._usage, strict=True)
        ]
        node_cores = None
        if used and None not in used:
            node_cores = sum(u for u in used if u is not None) / wall_s
        periods = throttled = 0
        for cap, (p0, t0) in zip(self._caps, self._throttle, strict=True):
            p1, t1 = cap.throttled()
            periods, throttled = periods + p1 - p0, throttled + t1 - t0
        share = throttled / periods if periods else None
        by_kind = dict.fromkeys(("media", "raylet", "other"), 0.0)
        others: dict[str, float] = {}
        for pid, (kind, what, cpu) in self._node_cpu(self._cluster).items():
            cores = (cpu - self._procs.get(pid, (kind, what, 0.0))[2]) / wall_s
            by_kind[kind] += cores
            if kind == "other":
                others[what] = others.get(what, 0.0) + cores
        return Machine(node_cores, share, idle, os.getloadavg()[0], by_kind, others)


def rows(dsn: str, sql: str, sid: str, **params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(sql, {"s": sid, **params}).fetchall())


def new_stream(http: httpx.Client, auth: dict[str, str], quality: str) -> tuple[str, str]:
    r = http.post(
        f"{API}/create",
        json={"title": "scale-out", "quality": quality, "latencyMode": "normal"},
        headers=auth,
    )
    r.raise_for_status()
    return r.json()["id"], r.json()["stream_key"]


def wait_quality(dsn: str, sid: str, n: int, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        q = rows(
            dsn,
            "SELECT source_sequence, duration, latency_ms, retries, created_at"
            " FROM stream_quality WHERE stream_id = %(s)s ORDER BY source_sequence",
            sid,
        )
        if len(q) >= n or time.monotonic() > deadline:
            return q
        time.sleep(0.2)


def wait_ladder(dsn: str, sid: str, n: int, timeout_s: float) -> float | None:
    """When the last rendition segment of the stream's first `n` source segments was
    published: every rung, not only the lowest (published first, `actors.lowest_first`,
    so the quality rows alone time the lowest rungs' work). None: not all in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        [r] = rows(
            dsn,
            "SELECT count(*) AS got, extract(epoch FROM max(created_at))::float AS last,"
            " (SELECT count(*) FROM stream_renditions WHERE stream_id = %(s)s) AS rungs"
            " FROM stream_segments WHERE stream_id = %(s)s AND source_sequence < %(n)s",
            sid,
            n=n,
        )
        if r["rungs"] and r["got"] >= n * r["rungs"]:
            return float(r["last"])
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def stages(dsn: str, sid: str) -> tuple[dict[str, float], int, int]:
    """Median per-stage milliseconds over the pool's jobs (a segment's rungs share their
    job's timings; a split segment has two jobs: `actors.lowest_first`), the jobs per
    source segment (`jobs`), the distinct workers that ran them and the rendition
    segments published."""
    segs = rows(
        dsn,
        "SELECT source_sequence, timings FROM stream_segments WHERE stream_id = %(s)s",
        sid,
    )
    jobs = {(r["source_sequence"], json.dumps(r["timings"], sort_keys=True)): r for r in segs}
    timed = [r["timings"] for r in jobs.values()]
    out = {k: statistics.median(float(t.get(k, 0.0)) for t in timed) for k in STAGES}
    out["jobs"] = len(jobs) / max(1, len({r["source_sequence"] for r in segs}))
    workers = {r["timings"].get("worker") for r in segs} - {None}
    return out, len(workers), len(segs)


def measure(
    deployed: Deployed, cluster: LocalCluster, nodes: int, source: Path, segments: int
) -> Run:
    auth = {"Authorization": f"Bearer {deployed.token}"}
    with httpx.Client(base_url=deployed.api, timeout=30) as http:
        sid, key = new_stream(http, auth, "1080p")
        sampler, started = Sampler(cluster), time.time()
        publish(deployed, key, source, paced=False)
        q = wait_quality(deployed.dsn, sid, segments, 60 + 20 * segments)
        whole = wait_ladder(deployed.dsn, sid, len(q), 60 + 20 * segments)
        if whole is None:
            print(f"  {nodes} node(s): upper rungs not all published; timing the lowest rung")
        last = whole or max(r["created_at"].timestamp() for r in q)
        first = min(r["created_at"].timestamp() for r in q)
        machine = sampler.done(max(1e-3, last - started))
        http.post(f"{API}/end/{sid}", headers=auth)
    if len(q) < segments:
        print(f"  {nodes} node(s): only {len(q)}/{segments} segments published")
    latencies = {r["source_sequence"]: r["latency_ms"] for r in q if r["latency_ms"] is not None}
    stage_ms, workers, renditions = stages(deployed.dsn, sid)
    return Run(
        nodes,
        len(q),
        renditions,
        sum(r["duration"] for r in q),
        max(1e-3, last - started),
        list(latencies.values()),
        sum(r["retries"] for r in q),
        workers,
        stage_ms,
        machine,
        last - first,
    )


def warm_up(deployed: Deployed, source: Path, segments: int) -> None:
    """A short unpaced publish: the pool starts every worker (they stay for
    `media_pool_idle_s`), so the measured run does not time their start."""
    auth = {"Authorization": f"Bearer {deployed.token}"}
    with httpx.Client(base_url=deployed.api, timeout=30) as http:
        sid, key = new_stream(http, auth, "1080p")
        publish(deployed, key, source, paced=False)
        wait_quality(deployed.dsn, sid, segments, 240)
        http.post(f"{API}/end/{sid}", headers=auth)


def settle(cluster: LocalCluster, timeout_s: float = 240.0) -> None:
    """Wait until the worker nodes are quiet (under 0.03 cores each over 2 s) before the
    measured run: actors that are not media work but landed on a media node start
    there (the `embedder` loads its model on the first stream's create, for tens of
    seconds under a cap) and would otherwise eat into the first run's encoder."""
    started, first = time.monotonic(), None
    while time.monotonic() - started < timeout_s:
        sampler = Sampler(cluster)
        time.sleep(2.0)
        m = sampler.done(2.0)
        busy = sum(m.by_kind.values())
        first = first or m
        if busy < 0.03 * (len(cluster.nodes) - 1):
            break
    assert first is not None
    top = sorted(first.others.items(), key=lambda kv: -kv[1])[:2]
    listed = "; ".join(f"{what}: {cores:.2f}" for what, cores in top)
    print(f"  settled in {time.monotonic() - started:.0f} s (busy at first: {listed})")


def cgroup_check(cluster: LocalCluster) -> None:
    """Print, per capped node, whether its raylet and its MediaWorker processes are in
    its cgroup (`/proc/PID/cgroup`): the cap covers what the node forks."""
    for node in cluster.nodes:
        if node.cgroup is None:
            continue
        members, raylet = set(node.cgroup.pids()), node.raylet().pid
        media = []
        for p in node.processes():
            with contextlib.suppress(psutil.Error):
                if "MediaWorker" in " ".join(p.cmdline()):
                    media.append(p.pid)
        inside = [pid for pid in media if pid in members]
        print(
            f"  {node.name}: cgroup {node.cgroup.name}: {len(members)} processes;"
            f" raylet {raylet} {'in' if raylet in members else 'NOT in'} it;"
            f" MediaWorker {len(inside)}/{len(media)} in it"
        )


def print_table(runs: list[Run], quota: float | None) -> None:
    base = runs[0]
    cores = os.cpu_count() or 1
    cap = f"capped at {quota} cores (cgroup)" if quota else "uncapped"
    print(f"\nmachine: {cores} cores; each node: 1 CPU, 1 {ENCODE}, {cap}")
    if quota:
        left = ", ".join(f"{n}: {cores - n * quota:.2f}" for n in sorted({r.nodes for r in runs}))
        print(f"cores left to the head and the rest of the machine, per node count: {left}")
    print(
        "| nodes | segments (rungs) | wall | segments/s | x real time | latency p50 / p95 |"
        " vs 1 node | per node (aim >= 0.85) | steady segments/s, per node | retries |"
        " workers used |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        speedup = r.per_s / base.per_s
        steady = r.steady_per_s / base.steady_per_s
        print(
            f"| {r.nodes} | {r.segments} ({r.renditions}) | {r.wall_s:.1f} s | {r.per_s:.2f} |"
            f" {r.source_s / r.wall_s:.2f}x | {r.pct(0.5):.2f} s / {r.pct(0.95):.2f} s |"
            f" {speedup:.2f}x | {speedup / (r.nodes / base.nodes):.2f} |"
            f" {r.steady_per_s:.2f}, {steady / (r.nodes / base.nodes):.2f} | {r.retries} |"
            f" {r.workers} |"
        )
    print("\nwhere the CPU came from (did the caps hold?) and where a segment's time went:")
    print(
        "| nodes | nodes' CPU (cores) / caps | of which media / raylet / other Ray |"
        " throttled | machine idle cores | load 1m |"
        " first publication | jobs/segment | job queue | encode | store | worker CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        m, s = r.machine, r.stages_ms
        used = f"{m.node_cores:.2f}" if m.node_cores is not None else "-"
        caps = f"{r.nodes * quota:.2f}" if quota else "-"
        thr = f"{m.throttled:.0%}" if m.throttled is not None else "-"
        kinds = " / ".join(f"{m.by_kind[k]:.2f}" for k in ("media", "raylet", "other"))
        print(
            f"| {r.nodes} | {used} / {caps} | {kinds} | {thr} | {m.idle_cores:.2f} |"
            f" {m.load_1m:.1f} | {r.wall_s - r.steady_s:.1f} s | {s['jobs']:.1f} |"
            + "".join(f" {s[k] / 1000:.2f} s |" for k in STAGES)
        )
    for r in runs:
        top = sorted(r.machine.others.items(), key=lambda kv: -kv[1])[:4]
        if top:
            listed = "; ".join(f"{what}: {cores:.2f}" for what, cores in top)
            print(f"  {r.nodes} node(s), other Ray processes (cores): {listed}")


def overload(deployed: Deployed, source: Path, segments: int) -> None:
    """The backpressure run (helper "backpressure"'s `bench.overload.run`): a real-time
    publish heavier than one node, what was shed and for how long."""
    if importlib.util.find_spec("bench.overload") is None:
        print("\noverload run: not implemented (no bench.overload in this tree)")
        return
    from bench import overload as backpressure_bench

    print("\noverload (1 node, paced at real time):")
    backpressure_bench.run(deployed, source, segments)


def settings_env(nodes: int, preset: str) -> dict[str, str]:
    return {
        "LUMALIVE_EDGE_RESOURCE": EDGE,
        "LUMALIVE_MEDIA_ENCODE_RESOURCE": ENCODE,
        "LUMALIVE_MEDIA_WORKERS": str(nodes),
        "LUMALIVE_MEDIA_BACKPRESSURE": "0",
        "LUMALIVE_SEGMENT_SECONDS": "1",
        "LUMALIVE_MODERATION_FPS": "0",
        "LUMALIVE_X264_PRESET": preset,
    }


def run_nodes(args: argparse.Namespace, work: Path, nodes: int, sources: dict[str, Path]) -> Run:
    """`nodes` worker nodes, on a cluster and deployment of their own."""
    cluster = LocalCluster()
    deployed: Deployed | None = None
    try:
        cluster.start_head(num_cpus=0, resources={EDGE: 1})
        for i in range(nodes):
            cluster.add_node(
                f"w{i + 1}", num_cpus=1, resources={ENCODE: 1}, cpu_quota=args.cpu_quota
            )
        deployed = deploy(cluster, work / f"data-{nodes}", **settings_env(nodes, args.preset))
        warm_up(deployed, sources["warm"], 2 * nodes)
        cgroup_check(cluster)
        settle(cluster)
        print(f"{nodes} node(s): publishing {args.seconds} s of {args.size}@{args.fps}…")
        run = measure(deployed, cluster, nodes, sources["main"], args.seconds)
        if args.overload and nodes == 1:
            heavy = make_source(work / "heavy.flv", max(10, args.seconds), "1920x1080", 25)
            overload(deployed, heavy, max(10, args.seconds))
        return run
    finally:
        if deployed is not None:
            deployed.down()
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke: 1 and 2 nodes, 8 segments")
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--seconds", type=int, default=30, help="source length (1 s segments)")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument(
        "--cpu-quota", type=float, default=None, help="cap every worker node at this many cores"
    )
    ap.add_argument("--overload", action="store_true", help="also the backpressure run")
    args = ap.parse_args(argv)
    if args.quick:
        args.nodes, args.seconds, args.size, args.fps = [1, 2], 8, "320x180", 10
    work = Path(tempfile.mkdtemp(prefix="scale-out-"))
    sources = {
        "main": make_source(work / "source.flv", args.seconds, args.size, args.fps),
        "warm": make_source(work / "warm.flv", 2 * max(args.nodes), args.size, args.fps),
    }
    try:
        runs = [run_nodes(args, work, n, sources) for n in sorted(args.nodes)]
    except CgroupUnavailable as e:
        print(f"scale_out: {e}", file=sys.stderr)
        return 2
    print_table(runs, args.cpu_quota)
    return 0


if __name__ == "__main__":
    sys.exit(main())
