"""Scale-out: the same publish against 1, 2 and 3 worker nodes of one CPU each.

A Ray cluster on this machine (`tests.utils.ray_nodes.LocalCluster`): a head with the
edge resource (API, RTMP ingest; no CPUs for media) and worker nodes started with
`--num-cpus=1 --resources='{"media_encode": 1}'`, so each node is one encoder whatever
the machine has. `lumalive up --detach` is deployed once, with RAY_ADDRESS; the nodes
join one by one between the runs (the pool uses a node as it joins: nothing restarts).

Each run publishes the same source, unpaced (a publisher's backlog: every segment is
cut at once, so the pool is the limit), to a stream of its own, and reads the
stream's rows once all of them are published:

    segments/s     published segments over the wall time from the first cut to the
                   last publication
    x real time    source seconds over that wall time
    latency        per segment, cut -> published (`stream_quality.latency_ms`), p50/p95
    per node       segments/s over the 1-node run's, divided by the nodes (the aim:
                   0.85 or better)

`--overload` adds one run paced at real time on a single node with a ladder heavier
than one node (`bench.overload.run`, the backpressure benchmark's): which rungs were
shed and for how long, and whether the lowest rung missed a segment.

    .venv/bin/python -m bench.scale_out                # 1, 2, 3 nodes
    .venv/bin/python -m bench.scale_out --quick        # smoke: 1 and 2 nodes, few segments
    .venv/bin/python -m bench.scale_out --overload

A node count above the machine's physical cores cannot scale linearly here: the
figures print the core count beside them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from bench.ffmpeg_source import make_source, publish
from tests.utils.ray_nodes import Deployed, LocalCluster, deploy

EDGE, ENCODE = "lumalive_edge", "media_encode"
API = "/api/live-streaming"


@dataclass(frozen=True)
class Run:
    nodes: int
    segments: int
    source_s: float
    wall_s: float
    latencies_ms: list[float]
    retries: int

    @property
    def per_s(self) -> float:
        return self.segments / self.wall_s

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] / 1000


def rows(dsn: str, sql: str, sid: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(sql, {"s": sid}).fetchall())


def new_stream(http: httpx.Client, auth: dict[str, str], quality: str) -> tuple[str, str]:
    r = http.post(f"{API}/create", json={"title": "scale-out", "quality": quality}, headers=auth)
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


def measure(deployed: Deployed, nodes: int, source: Path, segments: int, timeout_s: float) -> Run:
    auth = {"Authorization": f"Bearer {deployed.token}"}
    with httpx.Client(base_url=deployed.api, timeout=30) as http:
        sid, key = new_stream(http, auth, "1080p")
        started = time.time()
        publish(deployed, key, source, paced=False)
        q = wait_quality(deployed.dsn, sid, segments, timeout_s)
        http.post(f"{API}/end/{sid}", headers=auth)
    if len(q) < segments:
        print(f"  {nodes} node(s): only {len(q)}/{segments} segments in {timeout_s:.0f} s")
    last = max(r["created_at"].timestamp() for r in q)
    return Run(
        nodes,
        len(q),
        sum(r["duration"] for r in q),
        max(1e-3, last - started),
        [r["latency_ms"] for r in q if r["latency_ms"] is not None],
        sum(r["retries"] for r in q),
    )


def print_table(runs: list[Run]) -> None:
    base = runs[0]
    print(f"\nmachine: {os.cpu_count()} cores; each node: 1 CPU, 1 {ENCODE}")
    print(
        "| nodes | segments | wall | segments/s | x real time | latency p50 / p95 |"
        " vs 1 node | per node (aim >= 0.85) | retries |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        speedup = r.per_s / base.per_s
        print(
            f"| {r.nodes} | {r.segments} | {r.wall_s:.1f} s | {r.per_s:.2f} |"
            f" {r.source_s / r.wall_s:.2f}x | {r.pct(0.5):.2f} s / {r.pct(0.95):.2f} s |"
            f" {speedup:.2f}x | {speedup / (r.nodes / base.nodes):.2f} | {r.retries} |"
        )


def overload(deployed: Deployed, source: Path, segments: int) -> None:
    """The backpressure run (helper "backpressure"'s `bench.overload.run`): a real-time
    publish heavier than one node, what was shed and for how long."""
    if importlib.util.find_spec("bench.overload") is None:
        print("\noverload run: not implemented (no bench.overload in this tree)")
        return
    from bench import overload as backpressure_bench

    print("\noverload (1 node, paced at real time):")
    backpressure_bench.run(deployed, source, segments)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke: 1 and 2 nodes, 8 segments")
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--seconds", type=int, default=30, help="source length (1 s segments)")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument("--overload", action="store_true", help="also the backpressure run")
    args = ap.parse_args(argv)
    if args.quick:
        args.nodes, args.seconds, args.size, args.fps = [1, 2], 8, "320x180", 10
    work = Path(tempfile.mkdtemp(prefix="scale-out-"))
    source = make_source(work / "source.flv", args.seconds, args.size, args.fps)
    cluster = LocalCluster()
    deployed: Deployed | None = None
    runs: list[Run] = []
    try:
        cluster.start_head(num_cpus=0, resources={EDGE: 1})
        deployed = deploy(
            cluster,
            work / "data",
            LUMALIVE_EDGE_RESOURCE=EDGE,
            LUMALIVE_MEDIA_ENCODE_RESOURCE=ENCODE,
            LUMALIVE_MEDIA_WORKERS=str(max(args.nodes)),
            LUMALIVE_SEGMENT_SECONDS="1",
            LUMALIVE_MODERATION_FPS="0",
            LUMALIVE_X264_PRESET=args.preset,
        )
        for n in sorted(args.nodes):
            while len(cluster.nodes) - 1 < n:  # the head is not an encoder
                cluster.add_node(f"w{len(cluster.nodes)}", num_cpus=1, resources={ENCODE: 1})
            print(f"{n} node(s): publishing {args.seconds} s of {args.size}@{args.fps}…")
            runs.append(measure(deployed, n, source, args.seconds, 60 + 20 * args.seconds))
        print_table(runs)
        if args.overload:
            for node in cluster.nodes[2:]:  # back to one encoder node
                cluster.kill(node)
            heavy = make_source(work / "heavy.flv", max(10, args.seconds), "1920x1080", 25)
            overload(deployed, heavy, max(10, args.seconds))
    finally:
        if deployed is not None:
            deployed.down()
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
