"""Backpressure under an overload on purpose: a stream whose segments arrive faster than
its worker pool finishes them, with backpressure off (the baseline: the pool falls
behind without bound) and on (rungs shed, `actors.backpressure`), side by side; and
the pool's reserve (`actors.segment_pool`: upper rungs hold all workers but one) off
and on, side by side (`--workers 2 --backpressure on --reserve both`); and the
lowest rung's lane (a lowest-rung job beside an upper-rung one on the same worker) off
and on (`--backpressure on --lane both`, on one worker or more); and, with the lane,
the upper-rung job yielding its CPUs to the lowest rung beside it off and on
(`--yield both`: `actors.worker_lane.LaneYield`).

One Ray node of `--workers` CPUs (`tests.utils.ray_nodes.LocalCluster`) runs that many
media workers (one by default); `lumalive up --detach` is deployed onto it once per
variant (`LUMALIVE_MEDIA_BACKPRESSURE`, `LUMALIVE_MEDIA_LOWEST_RESERVE`,
`LUMALIVE_MEDIA_LOWEST_LANE`), each on a fresh cluster; the first variant is the
baseline. Each run publishes the same source (paced at real time, or unpaced with
`--quick`) to a new stream and reads its rows once every segment is published:

    overload start   the first segment one of whose jobs waited a whole segment duration
                     for a worker (`timings.queue`, the most of its rungs': the lowest
                     rung is a job of its own, served first): from there on the pool is
                     behind (on a cold pool the first segments also wait for the worker
                     to start)
    shedding start   the first segment encoded without a rung (`stream_quality.shed`)
    shed             per rung, how many segments and media seconds it was shed for
    lowest misses    source segments published without the lowest rung (aim: 0)
    latency          cut -> published per segment (`latency_ms`): p50 / p95 / last
                     (the last is how far behind the live edge the stream ended)
    stall max / p95  the wall time between two publications of the lowest rung: the
                     longest, and the 95th percentile (aim: one target duration)
    own stall max    the most a stall exceeded the time between the two segments' cuts
                     (the publisher's own pace, which a paced source on a loaded box
                     does not keep exactly): what the pipeline added
    top lag          how long after its lowest rung a segment's top rung was published
                     (p95 / max; 0 when a segment is published whole)
    upper            upper-rung segments published (not shed, not gaps), and per second
                     from the first publication to the last: the upper rungs'
                     throughput, what the reserve (or the lane) costs

Streams are created in latency mode `normal` (`--latency low` for the default): in
`low`, the rungs the streaming encoder carries are not the pool's work
(`actors.encode_once`), so the pool is not what falls behind.

    .venv/bin/python -m bench.overload            # 1080p25 source, 30 s, paced
    .venv/bin/python -m bench.overload --quick    # smoke: 480p10, 10 s, unpaced
    .venv/bin/python -m bench.overload --workers 2 --backpressure on --reserve both
    .venv/bin/python -m bench.overload --backpressure on --reserve off --lane both
    .venv/bin/python -m bench.overload --backpressure on --reserve off --lane on \
        --yield both --cpu-quota 1

The node declares one CPU per worker, but its host may have more cores: a lane job
then gets a spare core, which a node packed with workers would not have (see
`bench/reserve_sim.py` for a model where the two jobs share one core). `--cpu-quota Q`
caps the node at Q cores (a cgroup of its own, as `bench.scale_out` does): with Q equal
to the workers, a lane job shares its worker's core, as on a node packed with workers.

`run(deployed, source, segments)` is the overloaded run alone, on a deployment the
caller made (`bench.scale_out --overload`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from bench.ffmpeg_source import make_source, publish
from tests.utils.ray_nodes import Deployed, LocalCluster, deploy

__all__ = ["Overload", "analyse", "print_report", "run", "main"]

API = "/api/live-streaming"
ENCODE = "media_encode"


@dataclass
class Overload:
    """What one overloaded run did (see the module docstring)."""

    label: str
    segments: int
    segment_s: float
    overload_start: int | None
    shedding_start: int | None
    shed: dict[str, tuple[int, float]]  # rung -> (segments, media seconds)
    lowest: str
    lowest_misses: int
    latencies_s: list[float]
    stalls_s: list[float]
    own_stalls_s: list[float] = field(default_factory=list)  # stall - the cuts' gap
    worst: str = ""  # the longest own stall: its segment and the lowest rung's timings
    lowest_encode_ms: list[float] = field(default_factory=list)  # wall, per segment
    lowest_queue_ms: list[float] = field(default_factory=list)  # cut -> its job started
    top_lag_s: list[float] = field(default_factory=list)
    upper_published: int = 0
    upper_span_s: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def longest_stall_s(self) -> float:
        return max(self.stalls_s, default=0.0)

    @property
    def upper_per_s(self) -> float:
        return self.upper_published / self.upper_span_s if self.upper_span_s else float("nan")

    @property
    def start_delta(self) -> int | None:
        if self.overload_start is None or self.shedding_start is None:
            return None
        return self.shedding_start - self.overload_start


def _rows(dsn: str, sql: str, sid: str, **params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(sql, {"s": sid, **params}).fetchall())


def analyse(dsn: str, sid: str, segment_s: float, label: str = "backpressure on") -> Overload:
    """Read one stream's rows (a superuser DSN: no RLS) into an `Overload`."""
    quality = _rows(
        dsn,
        "SELECT source_sequence, duration, latency_ms, dropped, shed FROM stream_quality"
        " WHERE stream_id = %(s)s ORDER BY source_sequence",
        sid,
    )
    renditions = _rows(
        dsn, "SELECT * FROM stream_renditions WHERE stream_id = %(s)s ORDER BY position", sid
    )
    rungs = [r["name"] for r in renditions if r.get("tile_row") is None]
    lowest = rungs[-1] if rungs else "?"
    published = _rows(
        dsn,
        "SELECT source_sequence, created_at, timings FROM stream_segments"
        " WHERE stream_id = %(s)s AND rendition = %(r)s AND NOT gap ORDER BY sequence",
        sid,
        r=lowest,
    )
    shed: dict[str, tuple[int, float]] = {}
    for q in quality:
        for name in q["shed"] or ():
            n, s = shed.get(name, (0, 0.0))
            shed[name] = (n + 1, s + q["duration"])
    queued = _rows(
        dsn,
        "SELECT source_sequence, max((timings->>'queue')::float) AS queue_ms"
        " FROM stream_segments WHERE stream_id = %(s)s AND NOT gap"
        " GROUP BY source_sequence ORDER BY source_sequence",
        sid,
    )
    waited = [q["source_sequence"] for q in queued if (q["queue_ms"] or 0) >= segment_s * 1e3]
    times = [p["created_at"].timestamp() for p in published]
    # When each was cut: published minus its latency (cut -> published).
    latency = {q["source_sequence"]: q["latency_ms"] for q in quality}
    cuts = [
        t - (latency.get(p["source_sequence"]) or 0) / 1e3
        for t, p in zip(times, published, strict=True)
    ]
    top = rungs[0] if rungs else "?"
    lags = _rows(
        dsn,
        "SELECT extract(epoch FROM t.created_at - l.created_at)::float AS lag"
        " FROM stream_segments l JOIN stream_segments t USING (stream_id, sequence)"
        " WHERE l.stream_id = %(s)s AND l.rendition = %(l)s AND t.rendition = %(t)s"
        " AND NOT t.gap",
        sid,
        l=lowest,
        t=top,
    )
    upper = _rows(
        dsn,
        "SELECT count(*) FILTER (WHERE rendition <> ALL(%(low)s) AND NOT gap) AS n,"
        " extract(epoch FROM max(created_at) FILTER (WHERE rendition <> ALL(%(low)s)"
        " AND NOT gap) - min(created_at))::float AS span"
        " FROM stream_segments WHERE stream_id = %(s)s",
        sid,
        low=[lowest],
    )[0]
    events = _rows(
        dsn,
        "SELECT event_data AS data FROM live_stream_events"
        " WHERE stream_id = %(s)s AND event_type = 'quality_degraded' ORDER BY seq",
        sid,
    )
    own = [
        (t1 - t0) - (c1 - c0)
        for t0, t1, c0, c1 in zip(times, times[1:], cuts, cuts[1:], strict=False)
    ]
    worst = ""
    if own:
        i = max(range(len(own)), key=own.__getitem__)
        before, after = published[i], published[i + 1]
        worst = (
            f"segment {after['source_sequence']} (+{own[i]:.2f} s): lowest rung's timings"
            f" {_stages(after['timings'])}, the one before {_stages(before['timings'])}"
        )
    return Overload(
        label=label,
        segments=len(quality),
        segment_s=segment_s,
        overload_start=waited[0] if waited else None,
        shedding_start=next((q["source_sequence"] for q in quality if q["shed"]), None),
        shed=shed,
        lowest=lowest,
        lowest_misses=sum(not q["dropped"] for q in quality) - len(published),
        latencies_s=[q["latency_ms"] / 1e3 for q in quality if q["latency_ms"] is not None],
        stalls_s=[b - a for a, b in zip(times, times[1:], strict=False)],
        own_stalls_s=own,
        worst=worst,
        lowest_encode_ms=[p["timings"].get("encode", 0.0) for p in published if p["timings"]],
        lowest_queue_ms=[p["timings"].get("queue", 0.0) for p in published if p["timings"]],
        top_lag_s=[row["lag"] for row in lags] if top != lowest else [],
        upper_published=upper["n"] or 0,
        upper_span_s=upper["span"] or 0.0,
        events=[e["data"] for e in events],
    )


def _stages(timings: dict[str, Any] | None) -> str:
    keys = ("queue", "dispatch", "moderate", "encode", "store", "cpu", "cpu_shared")
    return ", ".join(f"{k} {timings[k]:.0f}" for k in keys if timings and k in timings)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def print_report(runs: list[Overload]) -> None:
    """The runs side by side; ratios against the first (the baseline)."""
    base = runs[0]
    print(
        "\n| run | segments | overload start | shedding start (delta) | shed |"
        " lowest misses | lowest latency p50 / p95 / last | vs baseline p95 |"
        " lowest stall max / p95 | vs baseline max | own stall max | top lag p95 / max |"
        " upper published (per s) | vs baseline per s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        shed = ", ".join(f"{k}: {n} seg / {s:.0f} s" for k, (n, s) in r.shed.items()) or "-"
        delta = "-" if r.start_delta is None else f"{r.shedding_start} ({r.start_delta:+d})"
        last = r.latencies_s[-1] if r.latencies_s else float("nan")
        p95 = _pct(r.latencies_s, 0.95)
        print(
            f"| {r.label} | {r.segments} | {r.overload_start} | {delta} | {shed} |"
            f" {r.lowest_misses} ({r.lowest}) | {_pct(r.latencies_s, 0.5):.1f} / {p95:.1f} /"
            f" {last:.1f} s | {_ratio(p95, _pct(base.latencies_s, 0.95))} |"
            f" {r.longest_stall_s:.1f} / {_pct(r.stalls_s, 0.95):.1f} s"
            f" (target {r.segment_s:.0f} s) | {_ratio(r.longest_stall_s, base.longest_stall_s)} |"
            f" {max(r.own_stalls_s, default=float('nan')):+.2f} s |"
            f" {_pct(r.top_lag_s, 0.95):.1f} / {max(r.top_lag_s, default=float('nan')):.1f} s |"
            f" {r.upper_published} ({r.upper_per_s:.2f}/s) |"
            f" {_ratio(r.upper_per_s, base.upper_per_s)} |"
        )
    for r in runs:
        enc, queue = r.lowest_encode_ms, r.lowest_queue_ms
        print(
            f"  {r.label}: lowest rung's encode p50 / p95 / max {_pct(enc, 0.5):.0f} /"
            f" {_pct(enc, 0.95):.0f} / {max(enc, default=float('nan')):.0f} ms, queue"
            f" {_pct(queue, 0.5):.0f} / {_pct(queue, 0.95):.0f} /"
            f" {max(queue, default=float('nan')):.0f} ms; longest own stall at {r.worst}"
        )
    for r in runs:
        for e in r.events:
            print(
                f"  {r.label}: segment {e.get('source_sequence')}: {e.get('action')} to level"
                f" {e.get('level')} (shed {e.get('shed')}, {e.get('waiting')} waiting)"
            )


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base and base == base and value == value else "-"


def _wait(dsn: str, sid: str, n: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        got = len(_rows(dsn, "SELECT 1 FROM stream_quality WHERE stream_id = %(s)s", sid))
        if got >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def run(
    deployed: Deployed,
    source: Path,
    segments: int,
    *,
    paced: bool = True,
    segment_s: float = 1.0,
    label: str = "backpressure on",
    timeout_s: float = 600.0,
    latency: str = "normal",
) -> Overload:
    """Publish `source` (`segments` segments) to a new stream on `deployed`, wait until
    all are published, end the stream, print and return what backpressure did."""
    auth = {"Authorization": f"Bearer {deployed.token}"}
    with httpx.Client(base_url=deployed.api, timeout=30) as http:
        r = http.post(
            f"{API}/create", json={"title": "overload", "latencyMode": latency}, headers=auth
        )
        r.raise_for_status()
        sid, key = r.json()["id"], r.json()["stream_key"]
        publish(deployed, key, source, paced=paced)
        got = _wait(deployed.dsn, sid, segments, timeout_s)
        http.post(f"{API}/end/{sid}", headers=auth)
    if got < segments:
        print(f"  {label}: only {got}/{segments} segments in {timeout_s:.0f} s")
    result = analyse(deployed.dsn, sid, segment_s, label)
    print_report([result])
    return result


@dataclass(frozen=True)
class Variant:
    """One run's deployment: backpressure, the pool's reserve and lane, its worker count."""

    backpressure: bool
    reserve: bool
    workers: int
    lane: bool = False
    lane_yield: bool = True  # the shipped default (`media_lane_yield`)

    @property
    def label(self) -> str:
        lane = ("on, yield" if self.lane_yield else "on, no yield") if self.lane else "off"
        return (
            f"backpressure {'on' if self.backpressure else 'off'},"
            f" reserve {'on' if self.reserve else 'off'}, lane {lane},"
            f" {self.workers} worker(s)"
        )

    @property
    def tag(self) -> str:
        """Its data directory's suffix."""
        flags = (self.backpressure, self.reserve, self.lane, self.lane_yield)
        return "".join(str(int(f)) for f in flags)


def _one_cluster(
    work: Path,
    source: Path,
    segments: int,
    preset: str,
    paced: bool,
    variant: Variant,
    *,
    latency: str = "normal",
    cpu_quota: float | None = None,
) -> Overload:
    """One run on a cluster of its own (a head and one encoder node of a CPU per
    worker, capped at `cpu_quota` cores if given): a second `lumalive up` on the same
    cluster would find the first one's Serve proxy."""
    cluster = LocalCluster()
    try:
        cluster.start_head(num_cpus=0, resources={"lumalive_edge": 1})
        cluster.add_node(
            "w1",
            num_cpus=variant.workers,
            resources={ENCODE: variant.workers},
            cpu_quota=cpu_quota,
        )
        deployed = deploy(
            cluster,
            work / f"data-{variant.tag}",
            LUMALIVE_EDGE_RESOURCE="lumalive_edge",
            LUMALIVE_MEDIA_ENCODE_RESOURCE=ENCODE,
            LUMALIVE_MEDIA_WORKERS=str(variant.workers),
            LUMALIVE_SEGMENT_SECONDS="1",
            LUMALIVE_MODERATION_FPS="0",
            LUMALIVE_X264_PRESET=preset,
            LUMALIVE_MEDIA_BACKPRESSURE=str(int(variant.backpressure)),
            LUMALIVE_MEDIA_LOWEST_RESERVE=str(int(variant.reserve)),
            LUMALIVE_MEDIA_LOWEST_LANE=str(int(variant.lane)),
            LUMALIVE_MEDIA_LANE_YIELD=str(int(variant.lane_yield)),
        )
        try:
            return run(
                deployed, source, segments, paced=paced, label=variant.label, latency=latency
            )
        finally:
            deployed.down()
    finally:
        cluster.stop()


def _switch(value: str) -> tuple[bool, ...]:
    """off / on / both (off first: the baseline)."""
    return {"off": (False,), "on": (True,), "both": (False, True)}[value]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke: 480p10, 10 s, unpaced")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument("--latency", default="normal", choices=("normal", "low"))
    ap.add_argument("--workers", type=int, default=1, help="media workers (one CPU each)")
    ap.add_argument("--backpressure", default="both", choices=("off", "on", "both"))
    ap.add_argument("--reserve", default="on", choices=("off", "on", "both"))
    # On: the shipped default (`media_lowest_lane`); off: the figures before the lane.
    ap.add_argument("--lane", default="on", choices=("off", "on", "both"))
    # With the lane: on, the shipped default (`media_lane_yield`); off, both jobs at once.
    ap.add_argument("--yield", dest="lane_yield", default="on", choices=("off", "on", "both"))
    ap.add_argument("--cpu-quota", type=float, default=None, help="cap the node at this many cores")
    args = ap.parse_args(argv)
    paced = not args.quick
    if args.quick:
        args.seconds, args.size, args.fps, args.preset = 10, "854x480", 10, "ultrafast"
    work = Path(tempfile.mkdtemp(prefix="overload-"))
    source = make_source(work / "source.flv", args.seconds, args.size, args.fps)
    print(
        f"one node, {args.workers} CPU(s), {args.workers} worker(s); {args.seconds} s of"
        f" {args.size}@{args.fps}, {'paced at real time' if paced else 'unpaced'}"
    )
    variants = [
        Variant(bp, reserve, args.workers, lane, lane_yield)
        for bp in _switch(args.backpressure)
        for reserve in _switch(args.reserve)
        for lane in _switch(args.lane)
        for lane_yield in (_switch(args.lane_yield) if lane else (True,))
    ]
    runs = [
        _one_cluster(
            work,
            source,
            args.seconds,
            args.preset,
            paced,
            v,
            latency=args.latency,
            cpu_quota=args.cpu_quota,
        )
        for v in variants
    ]
    print("\nside by side (ratios against the first run, the baseline):")
    print_report(runs)
    base, last = runs[0], runs[-1]
    print(
        f"\n{last.label} / {base.label}: lowest latency p95"
        f" {_ratio(_pct(last.latencies_s, 0.95), _pct(base.latencies_s, 0.95))},"
        f" lowest stall max {_ratio(last.longest_stall_s, base.longest_stall_s)},"
        f" upper per s {_ratio(last.upper_per_s, base.upper_per_s)};"
        f" lowest-rung misses: {last.lowest_misses}; shedding start - overload start:"
        f" {last.start_delta} segments (aim <= 2); mean shed segments per rung:"
        f" {statistics.fmean([n for n, _ in last.shed.values()]) if last.shed else 0:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
