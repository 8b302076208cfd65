"""Backpressure under an overload on purpose: a stream whose segments arrive faster than
its worker pool finishes them, with backpressure off (the baseline: the pool falls
behind without bound) and on (rungs shed, `actors.backpressure`), side by side.

One Ray node of one CPU (`tests.utils.ray_nodes.LocalCluster`) runs one media worker;
`lumalive up --detach` is deployed onto it with `LUMALIVE_MEDIA_BACKPRESSURE` 0, then
onto a fresh such cluster with 1. Each run publishes the same source (paced at real
time, or unpaced with `--quick`) to a new stream and reads its rows once every
segment is published:

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
    longest stall    the longest wall time between two publications of the lowest rung
    top lag          how long after its lowest rung a segment's top rung was published
                     (p95 / max; 0 when a segment is published whole)

Streams are created in latency mode `normal` (`--latency low` for the default): in
`low`, the rungs the streaming encoder carries are not the pool's work
(`actors.encode_once`), so the pool is not what falls behind.

    .venv/bin/python -m bench.overload            # 1080p25 source, 30 s, paced
    .venv/bin/python -m bench.overload --quick    # smoke: 480p10, 10 s, unpaced

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
    longest_stall_s: float
    top_lag_s: list[float] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

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
        "SELECT source_sequence, created_at FROM stream_segments"
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
    events = _rows(
        dsn,
        "SELECT event_data AS data FROM live_stream_events"
        " WHERE stream_id = %(s)s AND event_type = 'quality_degraded' ORDER BY seq",
        sid,
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
        longest_stall_s=max((b - a for a, b in zip(times, times[1:], strict=False)), default=0),
        top_lag_s=[row["lag"] for row in lags] if top != lowest else [],
        events=[e["data"] for e in events],
    )


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
        " lowest misses | latency p50 / p95 / last | vs baseline last | longest stall |"
        " top lag p95 / max |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        shed = ", ".join(f"{k}: {n} seg / {s:.0f} s" for k, (n, s) in r.shed.items()) or "-"
        delta = "-" if r.start_delta is None else f"{r.shedding_start} ({r.start_delta:+d})"
        last = r.latencies_s[-1] if r.latencies_s else float("nan")
        base_last = base.latencies_s[-1] if base.latencies_s else float("nan")
        print(
            f"| {r.label} | {r.segments} | {r.overload_start} | {delta} | {shed} |"
            f" {r.lowest_misses} ({r.lowest}) | {_pct(r.latencies_s, 0.5):.1f} /"
            f" {_pct(r.latencies_s, 0.95):.1f} / {last:.1f} s | {last / base_last:.2f} |"
            f" {r.longest_stall_s:.1f} s (target {r.segment_s:.0f} s) |"
            f" {_pct(r.top_lag_s, 0.95):.1f} / {max(r.top_lag_s, default=float('nan')):.1f} s |"
        )
    for r in runs:
        for e in r.events:
            print(
                f"  {r.label}: segment {e.get('source_sequence')}: {e.get('action')} to level"
                f" {e.get('level')} (shed {e.get('shed')}, {e.get('waiting')} waiting)"
            )


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


def _one_cluster(
    work: Path,
    source: Path,
    segments: int,
    preset: str,
    paced: bool,
    *,
    backpressure: bool,
    latency: str = "normal",
) -> Overload:
    """One run on a cluster of its own (a head and one 1-CPU encoder node): a second
    `lumalive up` on the same cluster would find the first one's Serve proxy."""
    cluster = LocalCluster()
    try:
        cluster.start_head(num_cpus=0, resources={"lumalive_edge": 1})
        cluster.add_node("w1", num_cpus=1, resources={ENCODE: 1})
        deployed = deploy(
            cluster,
            work / f"data-{int(backpressure)}",
            LUMALIVE_EDGE_RESOURCE="lumalive_edge",
            LUMALIVE_MEDIA_ENCODE_RESOURCE=ENCODE,
            LUMALIVE_MEDIA_WORKERS="1",
            LUMALIVE_SEGMENT_SECONDS="1",
            LUMALIVE_MODERATION_FPS="0",
            LUMALIVE_X264_PRESET=preset,
            LUMALIVE_MEDIA_BACKPRESSURE=str(int(backpressure)),
        )
        try:
            label = "backpressure on" if backpressure else "baseline (off)"
            return run(deployed, source, segments, paced=paced, label=label, latency=latency)
        finally:
            deployed.down()
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke: 480p10, 10 s, unpaced")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument("--latency", default="normal", choices=("normal", "low"))
    args = ap.parse_args(argv)
    paced = not args.quick
    if args.quick:
        args.seconds, args.size, args.fps, args.preset = 10, "854x480", 10, "ultrafast"
    work = Path(tempfile.mkdtemp(prefix="overload-"))
    source = make_source(work / "source.flv", args.seconds, args.size, args.fps)
    print(
        f"one node, one CPU, one worker; {args.seconds} s of {args.size}@{args.fps},"
        f" {'paced at real time' if paced else 'unpaced'}"
    )
    runs = [
        _one_cluster(
            work, source, args.seconds, args.preset, paced, backpressure=on, latency=args.latency
        )
        for on in (False, True)
    ]
    print("\nside by side (ratios against the baseline):")
    print_report(runs)
    on = runs[-1]
    print(
        f"\nlatency p95 on/off: {_pct(on.latencies_s, 0.95) / _pct(runs[0].latencies_s, 0.95):.2f};"
        f" lowest-rung misses: {on.lowest_misses}; shedding start - overload start:"
        f" {on.start_delta} segments (aim <= 2); mean shed segments per rung:"
        f" {statistics.fmean([n for n, _ in on.shed.values()]) if on.shed else 0:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
