"""A 1080p source made 4K with AI, on this machine, in bounded memory (issue 8).

The first try drove the 24 GB box to 22.6 GB and Ray's OOM killer took the ingest and
the Serve controller with it. Here a real ffmpeg publishes 1920x1080 at 1 fps for 4 s
(two 2 s segments) over RTMP to an ingest actor of the test's own whose ladder is not
capped (the session's is capped at 480p), with an enhancer pool actor and one media
worker. The stream asks for 8K with AI, and the worker's memory budget fits the 4K
ladder but not the 8K one, so the 8K rung is refused up front with an event, and:
- the media worker's and the enhancer's RSS, sampled through the run, stay under
  what each declared to Ray (`memory=`);
- the 4K rendition's segments decode at 3840x2160, every frame;
- the control plane is untouched: the Serve controller and the session's ingest
  actor are the same processes afterwards, and the API answers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import av
import httpx
import psutil
import pytest
import ray
from ray.util.state import list_actors

from actors import ingest_actor
from actors.enhancer_pool import enhancer_options
from actors.media_memory import media_memory_bytes
from lumalive.db import Database
from lumalive.settings import Settings
from media.ladder import build_ladder
from tests.utils.api import free_port
from tests.utils.db import rows_as

pytestmark = pytest.mark.slow

SOURCE = (1920, 1080)
FPS, SECONDS = 1, 4


def _pids(class_name: str) -> set[int]:
    """The live actors of this class in the session's cluster (by its address: another
    Ray instance on the machine must not make the lookup ambiguous)."""
    actors = list_actors(
        address=ray.get_runtime_context().gcs_address,
        filters=[("class_name", "=", class_name), ("state", "=", "ALIVE")],
    )
    return {a.pid for a in actors if a.pid}


class PeakRss:
    """The largest RSS of each watched process, sampled every 0.2 s in a thread."""

    def __init__(self) -> None:
        self.peak: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for name in ("MediaWorker", "EnhancerActor"):
                for pid in _pids(name):
                    try:
                        rss = psutil.Process(pid).memory_info().rss
                    except psutil.NoSuchProcess:
                        continue
                    self.names[pid] = name
                    self.peak[pid] = max(self.peak.get(pid, 0), rss)


async def _publish(port: int, key: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={SOURCE[0]}x{SOURCE[1]}:rate={FPS}",
        "-t", str(SECONDS), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-g", str(2 * FPS), "-f", "flv", f"rtmp://127.0.0.1:{port}/live/{key}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, err = await process.communicate()
    return process.returncode or 0, err.decode(errors="replace")


async def _rows(db: Database, owner: Any, sql: str, sid: str) -> list[dict[str, Any]]:
    return await rows_as(db, owner.id, sql, s=sid)


async def _free_cpu(timeout_s: float = 75.0) -> None:
    """Wait for a CPU for the test's worker: the session ingest's idle workers give
    theirs back after `media_pool_idle_s`."""
    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get("CPU", 0) < 1:  # type: ignore[no-untyped-call]
        assert time.monotonic() < deadline, "no CPU for the test's media worker"
        await asyncio.sleep(0.5)


async def _ready(actor: Any) -> None:
    await actor.ready.remote()


async def test_a_1080p_source_goes_4k_with_ai_in_bounded_memory(
    system: Any, settings: Settings, client: httpx.AsyncClient, db: Database, make_user: Any,
    make_stream: Any,
) -> None:  # fmt: skip
    ladder = build_ladder(*SOURCE, "8K", True, fps=FPS).renditions
    four_k_mb = media_memory_bytes(
        ladder[1:], True, source=SOURCE, enhancer_in_process=False, lane=settings.media_lowest_lane
    )
    ours = settings.model_copy(
        update={
            "rtmp_port": free_port(),
            "media_max_height": None,
            "media_workers": 1,
            "media_worker_cpus": 1,
            "media_enhancers": 1,
            "media_worker_memory_mb": four_k_mb // (1 << 20) + 1,
            "moderation_fps": 0,
        }
    )
    controller, session_ingest = _pids("ServeController"), _pids("IngestActor")
    assert controller and session_ingest
    actor: Any = ingest_actor.IngestActor
    ingest = actor.options(num_cpus=0).remote(ours)
    try:
        # Our ingest (no CPU) starts while a CPU frees up for its worker.
        await asyncio.gather(_ready(ingest), _free_cpu())
        owner = await make_user("uhd")
        stream = await make_stream(owner, quality="8K", enableAI=True)
        sid = stream["id"]
        with PeakRss() as rss:
            code, err = await _publish(ours.rtmp_port, stream["stream_key"])
            assert code == 0, err
            # Until both segments' 4K rungs are in: the quality row comes with a
            # segment's lowest rung, which is published before the rungs above it.
            deadline = time.monotonic() + 120
            q: list[dict[str, Any]] = []
            top: list[dict[str, Any]] = []
            while (len(q) < 2 or len(top) < 2) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                q = await _rows(db, owner, "SELECT dropped, error FROM stream_quality"
                                " WHERE stream_id = :s", sid)  # fmt: skip
                top = await _rows(db, owner, "SELECT sequence FROM stream_segments"
                                  " WHERE stream_id = :s AND rendition = '4K'", sid)  # fmt: skip
        assert [(x["dropped"], x["error"]) for x in q] == [(False, None)] * 2
        declared = {
            "MediaWorker": ours.media_worker_memory_mb * (1 << 20),  # type: ignore[operator]
            "EnhancerActor": enhancer_options(ours, 0)["memory"],
        }
        assert set(rss.names.values()) >= {"MediaWorker", "EnhancerActor"}
        for pid, peak in sorted(rss.peak.items()):
            print(f"{rss.names[pid]} {pid}: peak RSS {peak >> 20} MiB, declared "
                  f"{declared[rss.names[pid]] >> 20} MiB")  # fmt: skip
        for pid, peak in rss.peak.items():
            assert peak < declared[rss.names[pid]], (rss.names[pid], peak, declared)

        segs = await _rows(db, owner, "SELECT rendition, path, frames FROM stream_segments"
                           " WHERE stream_id = :s", sid)  # fmt: skip
        assert {s["rendition"] for s in segs} == {"4K", "1080p", "720p", "480p", "360p"}
        for seg in (s for s in segs if s["rendition"] == "4K"):
            with av.open(str(ours.media_root / seg["path"])) as played:
                sizes = [(f.width, f.height) for f in played.decode(video=0)]
            assert sizes == [(3840, 2160)] * seg["frames"] and seg["frames"] == 2 * FPS
        events = await client.get(
            f"/api/live-streaming/{sid}/events",
            params={"type": "quality_degraded"},
            headers=owner.auth,
        )
        assert events.status_code == 200, events.text
        [refused] = [e["data"] for e in events.json()["items"]]
        assert refused["action"] == "rendition_refused" and refused["rendition"] == "8K"
        await client.post(f"/api/live-streaming/end/{sid}", headers=owner.auth)
    finally:
        await asyncio.to_thread(ingest_actor.stop, ingest)
    assert _pids("ServeController") == controller
    assert _pids("IngestActor") == session_ingest
    assert (await client.get("/healthz")).status_code == 200
