"""LumaLive on a Ray cluster of several nodes on this machine (issue 9).

The cluster is this module's own (`tests.utils.ray_nodes`): a head that advertises the
edge resource (the API and the RTMP ingest are pinned to it) and no encode resource,
and worker nodes with one CPU and one `media_encode` each, where the media workers go
(`actors.placement`). `lumalive up --detach` deploys onto it with `RAY_ADDRESS`, as an
operator would, in a process of its own: this test process never joins the cluster
(it may already be connected to the session's), it drives everything over HTTP, RTMP
and Postgres and reads the cluster with a separate probe process.

One stream, one story:
  1. a burst of segments is encoded on both worker nodes;
  2. one worker node's raylet is SIGKILLed while both are busy: its segment is retried
     elsewhere, nothing is dropped, nothing is published twice;
  3. a new node joins, with nothing restarted, and the next burst is encoded on it;
  4. the playlist is dense (media sequence 0..N-1), each source segment in it once;
     the API and the ingest ran on the edge node.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import psycopg
import pytest

from tests.utils.api import BASE
from tests.utils.ray_nodes import Deployed, LocalCluster, RayNode, deploy

pytestmark = pytest.mark.slow

EDGE = "lumalive_edge"
ENCODE = "media_encode"
FPS = 4  # 1 s segments of 4 frames at 320x180: cheap, but each a real Ray round trip
FIRST_BURST = 40
SECOND_BURST = 16


@dataclass
class Deployment:
    cluster: LocalCluster
    head: RayNode
    a: RayNode
    b: RayNode
    deployed: Deployed
    c: RayNode | None = None  # joins during the test


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    cluster = LocalCluster()
    deployed: Deployed | None = None
    try:
        head = cluster.start_head(num_cpus=1, resources={EDGE: 1})
        workers: dict[str, RayNode] = {}

        def join() -> None:  # one after the other: the GCS of a loaded box is slow
            for name in ("a", "b"):
                workers[name] = cluster.add_node(name, num_cpus=1, resources={ENCODE: 1})

        joining = threading.Thread(target=join)  # while `up` starts Postgres and Serve
        joining.start()
        try:
            deployed = deploy(
                cluster,
                tmp_path_factory.mktemp("multinode"),
                LUMALIVE_EDGE_RESOURCE=EDGE,
                LUMALIVE_MEDIA_ENCODE_RESOURCE=ENCODE,
                LUMALIVE_MEDIA_WORKERS="3",  # more than the first two nodes hold
                LUMALIVE_SEGMENT_SECONDS="1",
                LUMALIVE_MODERATION_FPS="0",
                LUMALIVE_X264_PRESET="ultrafast",
                LUMALIVE_LIVE_WINDOW_SEGMENTS="1000",  # the whole stream in the playlist
                LUMALIVE_RECONNECT_GRACE_S="300",  # live between the two publishes
            )
        finally:
            joining.join()
        yield Deployment(cluster, head, workers["a"], workers["b"], deployed)
    finally:
        if deployed is not None:
            deployed.down()
        cluster.stop()


def _publish(port: int, key: str, seconds: int) -> subprocess.Popen[bytes]:
    """ffmpeg sends `seconds` of a 320x180 test pattern at once (not paced): a burst of
    1 s segments, more than the pool finishes before the next arrives."""
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"]
        + ["-f", "lavfi", "-i", f"testsrc=size=320x180:rate={FPS}", "-t", str(seconds)]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(FPS), "-keyint_min", str(FPS)]
        + ["-sc_threshold", "0", "-pix_fmt", "yuv420p", "-f", "flv"]
        + [f"rtmp://127.0.0.1:{port}/live/{key}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _rows(dsn: str, sql: str, sid: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return list(cur.execute(sql, {"s": sid}).fetchall())


def _quality(d: Deployment, sid: str) -> list[dict[str, Any]]:
    return _rows(
        d.deployed.dsn,
        "SELECT source_sequence, dropped, retries FROM stream_quality"
        " WHERE stream_id = %(s)s ORDER BY source_sequence",
        sid,
    )


def _wait(check: Any, what: str, timeout_s: float = 120.0, every_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


def _listener(port: int, host: str = "127.0.0.1") -> int:
    """The pid listening on `host:port` (the product's listeners bind loopback). The
    address matters: another process may hold the same port number on another address
    (a Ray worker's gRPC server on the node IP or `::`), and the first listener on the
    number was once such a worker, not the API's proxy."""
    for c in psutil.net_connections("tcp"):
        if c.status != psutil.CONN_LISTEN or not c.laddr or not c.pid:
            continue
        if c.laddr.port == port and c.laddr.ip == host:
            return c.pid
    raise LookupError(f"nothing listens on {port}")


def test_a_stream_spreads_over_nodes_survives_losing_one_and_uses_a_new_one(
    deployment: Deployment,
) -> None:
    d = deployment
    auth = {"Authorization": f"Bearer {d.deployed.token}"}
    http = httpx.Client(base_url=d.deployed.api, timeout=30)
    rtmp_port = d.deployed.rtmp_port
    # Latency `normal`: every rung is the pool's work (no streaming encoder on the
    # edge node taking the low rungs), so both worker nodes are busy when b dies.
    body = {"title": "multinode", "quality": "1080p", "latencyMode": "normal"}
    r = http.post(f"{BASE}/create", json=body, headers=auth)
    assert r.status_code == 201, r.text
    sid, key = r.json()["id"], r.json()["stream_key"]
    ingest_pid = _listener(rtmp_port)
    assert d.head.owns(ingest_pid)  # the RTMP ingest runs on the edge (head) node
    api_port = int(d.deployed.api.rsplit(":", 1)[1])
    assert d.head.owns(_listener(api_port))  # ... and Serve's HTTP proxy (HeadOnly)

    # 1-2. A burst over both nodes; kill node b while both are busy.
    publisher = _publish(rtmp_port, key, FIRST_BURST)
    _wait(lambda: len(_quality(d, sid)) >= 6, "the first segments", 90)
    d.cluster.kill(d.b)
    killed_at = time.monotonic()

    # 3. A node joins while the backlog is still being worked off.
    def join_c() -> None:
        d.c = d.cluster.add_node("c", num_cpus=1, resources={ENCODE: 1})

    joining = threading.Thread(target=join_c)
    joining.start()
    assert publisher.wait(60) == 0, publisher.stderr.read() if publisher.stderr else ""
    _wait(lambda: len(_quality(d, sid)) >= FIRST_BURST, "the first burst", 120)
    joining.join()
    first_done = len(_quality(d, sid))
    publisher = _publish(rtmp_port, key, SECOND_BURST)  # the publisher reconnects
    assert publisher.wait(60) == 0, publisher.stderr.read() if publisher.stderr else ""
    total = FIRST_BURST + SECOND_BURST
    _wait(lambda: len(_quality(d, sid)) >= total, "the second burst", 120)
    killed_s = time.monotonic() - killed_at
    assert _listener(rtmp_port) == ingest_pid  # nothing was restarted for the new node

    # 4. The playlist, as a player gets it from the API. The top rung's rows follow
    # its segment's lowest rung (published first, with the quality row): wait for them.
    def all_rows() -> list[dict[str, Any]] | None:
        rows = _rows(
            d.deployed.dsn,
            "SELECT rendition, sequence, source_sequence, timings->>'worker' AS worker,"
            " (timings->>'retries')::int AS retries"
            " FROM stream_segments WHERE stream_id = %(s)s ORDER BY rendition, sequence",
            sid,
        )
        top = [r for r in rows if r["rendition"] == rows[0]["rendition"]] if rows else []
        return rows if len(top) >= total else None

    segments = _wait(all_rows, "every segment of the top rung", 60)
    rendition = segments[0]["rendition"]
    playlist = http.get(f"{BASE}/{sid}/hls/{rendition}/index.m3u8", headers=auth)
    assert playlist.status_code == 200, playlist.text
    http.post(f"{BASE}/end/{sid}", headers=auth)
    lines = playlist.text.splitlines()
    uris = [line for line in lines if line and not line.startswith("#")]
    assert "#EXT-X-MEDIA-SEQUENCE:0" in lines
    assert len(uris) == total and len(set(uris)) == total  # no gap, no duplicate
    mine = [s for s in segments if s["rendition"] == rendition]
    assert [s["sequence"] for s in mine] == list(range(total))
    assert [s["source_sequence"] for s in mine] == list(range(total))
    quality = _quality(d, sid)
    assert [q["source_sequence"] for q in quality] == list(range(total))
    assert not any(q["dropped"] for q in quality)
    # A retried job is the lowest rung's (its retries are the quality row's) or the
    # other rungs' (their rows' timings).
    retries = {q["source_sequence"]: q["retries"] for q in quality if q["retries"]}
    retries |= {s["source_sequence"]: s["retries"] for s in segments if s["retries"]}
    assert retries, "node b was busy when it was killed: a segment must have been retried"

    # Where everything ran, by Ray node id (a worker's name starts with its node's).
    probe = d.cluster.probe()
    node_of = {n["node_manager_port"]: n["id"] for n in probe["nodes"]}
    assert d.c is not None
    head, a, b, c = (node_of[n.node_manager_port] for n in (d.head, d.a, d.b, d.c))
    alive = {n["id"] for n in probe["nodes"] if n["alive"]}
    assert b not in alive and {head, a, c} <= alive

    def nodes(rows: list[dict[str, Any]]) -> set[str]:
        prefixes = {s["worker"].split(":")[0] for s in rows}
        return {n for n in (head, a, b, c) if n[:12] in prefixes}

    where = [(s["source_sequence"], s["worker"]) for s in mine]
    assert nodes(mine[:first_done]) >= {a, b}, where  # the first burst: both worker nodes
    assert c in nodes(mine[first_done:]), where  # the new node took part of the second
    assert head not in nodes(mine), where  # no encode resource there
    ingest = [x for x in probe["actors"] if x["name"] == "ingest" and x["state"] == "ALIVE"]
    api = [x for x in probe["actors"] if "LumaApi" in x["class"] and x["state"] == "ALIVE"]
    assert ingest and api
    assert {x["node"] for x in ingest + api} == {head}  # pinned to the edge node
    # ... and the control plane's actors too, off the media nodes' CPUs.
    # (The stream's actor may have exited once its stream went idle: where it ran counts.)
    control = [
        x
        for x in probe["actors"]
        if x["node"] and x["class"] in ("StreamActor", "WebhookDispatcherActor")
    ]
    seen = sorted({(x["class"], x["state"]) for x in probe["actors"]})
    assert {x["class"] for x in control} == {"StreamActor", "WebhookDispatcherActor"}, seen
    assert {x["node"] for x in control} == {head}, control
    print(f"multinode: {total} segments, retried {retries}; b lost {killed_s:.0f} s before the end")
