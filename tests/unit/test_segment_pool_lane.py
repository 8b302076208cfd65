"""The lowest rung's lane (`actors.segment_pool`, `lane=True`): a worker running an
upper-rung job may run one lowest-rung job beside it, so a lowest rung never waits for
a whole upper-rung job, even on a pool of one worker. Workers come from the in-memory
factory of tests/unit/test_media_pool.py: segments end (or die) when the test says.
The last test runs two segments at once on one real `SegmentWorker` (PyAV), as the
Ray actor does with `max_concurrency=2`."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import pytest

from actors.backpressure import Backlog
from actors.media_worker import SegmentJob, SegmentWorker
from actors.segment_pool import SegmentPool
from actors.segment_publisher import ladder_for
from lumalive.settings import Settings
from media.storage import LocalStorage
from tests.unit.test_media_pool import Call, Worker, Workers, settled
from tests.unit.test_segment_pool_reserve import submit, waiting
from tests.utils.media import synthetic


def lane_pool(workers: Workers, size: int = 1, reserve: bool = False) -> SegmentPool[Worker]:
    return SegmentPool(workers, size=size, idle_s=60, reserve=reserve, lane=True)


async def test_a_lowest_rung_runs_beside_an_upper_rung_on_one_worker() -> None:
    workers = Workers()
    pool = lane_pool(workers)
    upper = submit(pool, 0, "upper")
    upper_call = await workers.next_call()
    assert pool.backlog() == Backlog(0, None, full=False)  # the lane is free to a lowest rung

    lowest = submit(pool, 1, "lowest")  # no idle worker, no room for one: the lane
    lane = await workers.next_call()
    assert lane.worker is upper_call.worker and len(workers.spawned) == 1
    assert pool.status()["lanes_busy"] == 1 and workers.running == 2
    assert pool.backlog().full  # the next lowest rung would wait

    second = submit(pool, 2, "lowest")  # one lane per worker: this one waits
    await waiting(pool, 1)
    lane.finish()  # the lane frees: the waiting lowest rung takes it at once
    call = await workers.next_call()
    assert (call.sequence, call.worker) == (2, upper_call.worker)
    call.finish()
    upper_call.finish()
    outcomes = await settled(upper, lowest, second)
    assert [o.retries for o in outcomes] == [0, 0, 0] and pool.status()["lanes_busy"] == 0
    assert workers.most_running == 2 and pool.status()["idle"] == [upper_call.worker]
    pool.shutdown()


async def test_upper_and_whole_jobs_never_take_a_lane() -> None:
    workers = Workers()
    pool = lane_pool(workers)
    first = submit(pool, 0, "upper")
    running = await workers.next_call()
    later = [submit(pool, 1, "upper"), submit(pool, 2, "whole")]
    await waiting(pool, 2)
    assert workers.running == 1 and pool.status()["lanes_busy"] == 0
    running.finish()
    for _ in range(2):
        (await workers.next_call()).finish()
    await settled(first, *later)
    pool.shutdown()


async def test_nothing_runs_beside_a_lowest_rung() -> None:
    """A lane is beside an upper-rung job only: a worker running a lowest rung (alone,
    or left alone when the upper rung beside it ended) takes nothing more."""
    workers = Workers()
    pool = lane_pool(workers)
    upper = submit(pool, 0, "upper")
    upper_call = await workers.next_call()
    lowest = submit(pool, 1, "lowest")
    lane = await workers.next_call()
    upper_call.finish()  # the upper rung ends first: the worker runs the lowest rung alone
    await settled(upper)
    later = [submit(pool, 2, "lowest"), submit(pool, 3, "upper")]
    await waiting(pool, 2)
    assert pool.status()["idle"] == [] and pool.backlog().full
    lane.finish()  # now idle: the oldest waiter (the lowest rung) takes it
    call = await workers.next_call()
    assert call.sequence == 2
    call.finish()
    (await workers.next_call()).finish()
    await settled(lowest, *later)
    assert len(workers.spawned) == 1
    pool.shutdown()


async def test_a_worker_dying_with_two_jobs_retries_both_and_is_lost_once() -> None:
    workers = Workers()
    pool = lane_pool(workers)
    upper = submit(pool, 0, "upper")
    upper_call = await workers.next_call()
    lowest = submit(pool, 1, "lowest")
    lane = await workers.next_call()
    dead = upper_call.worker

    lane.die()  # the worker is gone: its lowest rung retries on a new one at once
    retry = await workers.next_call()
    assert (retry.sequence, retry.worker.name) == (1, "w1")
    assert pool.status()["workers"] == 1 and workers.killed == [dead]
    upper_call.die()  # the other job learns it too: retried, the worker not lost twice
    await waiting(pool, 1)  # the upper rung's retry: nothing runs beside a lowest rung
    assert pool.status()["workers"] == 1 and workers.killed == [dead]
    retry.finish()
    retry_upper = await workers.next_call()
    assert (retry_upper.sequence, retry_upper.worker.name) == (0, "w1")
    retry_upper.finish()
    outcomes = await settled(upper, lowest)
    assert [o.retries for o in outcomes] == [1, 1] and pool.retried == 2
    assert dead not in pool.status()["idle"]
    pool.shutdown()


async def test_a_job_that_ends_on_a_dead_worker_does_not_bring_it_back() -> None:
    """Its lane job died with the worker; the upper rung's result still came back (it was
    done): the worker stays discarded, and the next job gets a new one."""
    workers = Workers()
    pool = lane_pool(workers)
    upper = submit(pool, 0, "upper")
    upper_call = await workers.next_call()
    lowest = submit(pool, 1, "lowest")
    (await workers.next_call()).die()
    retry = await workers.next_call()
    upper_call.finish()
    await settled(upper)
    assert pool.status()["idle"] == [] and pool.status()["workers"] == 1
    retry.finish()
    await settled(lowest)
    assert pool.status()["idle"] == [retry.worker]
    pool.shutdown()


async def test_without_the_lane_a_lowest_rung_waits_for_the_upper_rung() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=1, idle_s=60, reserve=False, lane=False)
    upper = submit(pool, 0, "upper")
    upper_call = await workers.next_call()
    assert pool.backlog().full
    lowest = submit(pool, 1, "lowest")
    await waiting(pool, 1)
    assert workers.running == 1 and pool.status()["lanes_busy"] == 0
    upper_call.finish()
    (await workers.next_call()).finish()
    await settled(upper, lowest)
    assert workers.most_running == 1
    pool.shutdown()


async def test_the_lane_serves_lowest_rungs_that_find_the_reserve_busy() -> None:
    workers = Workers()
    pool = lane_pool(workers, size=2, reserve=True)
    tasks = [submit(pool, 0, "upper"), submit(pool, 1, "lowest")]
    upper_call, reserve_call = await workers.next_call(), await workers.next_call()
    tasks.append(submit(pool, 2, "lowest"))  # the reserve runs a lowest rung: the lane
    lane = await workers.next_call()
    assert lane.worker is upper_call.worker is not reserve_call.worker
    for call in (lane, reserve_call, upper_call):
        call.finish()
    await settled(*tasks)
    pool.shutdown()


async def test_under_churn_a_worker_runs_at_most_an_upper_rung_and_a_lowest_rung() -> None:
    rng = random.Random(9)
    workers = Workers()
    pool = SegmentPool(workers, size=2, idle_s=60, max_attempts=5, reserve=False, lane=True)
    tasks = [submit(pool, n // 2, ("lowest", "upper")[n % 2]) for n in range(24)]
    running: list[Call] = []
    deaths = 0
    while not all(t.done() for t in tasks):
        while not workers.calls.empty():
            running.append(workers.calls.get_nowait())
        live = [c for c in running if not c.ended.done()]
        for worker in {id(c.worker): c.worker for c in live}.values():
            parts = sorted(c.job.part for c in live if c.worker is worker)
            assert parts in (["lowest"], ["upper"], ["lowest", "upper"]), parts
        assert workers.alive <= 2
        if live:
            call = rng.choice(live)
            if deaths < 3 and rng.random() < 0.15:
                deaths += 1
                for same in live:  # a worker dies with every job it runs
                    if same.worker is call.worker:
                        same.die()
            else:
                call.finish()
        for _ in range(5):
            await asyncio.sleep(0)
    outcomes = await settled(*tasks)
    assert len(outcomes) == 24 and pool.retried >= deaths
    assert pool.status()["workers"] == workers.alive and pool.status()["lanes_busy"] == 0
    pool.shutdown()


class Together(LocalStorage):
    """Storage whose puts wait until both calls got there: the two really overlap."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._both = threading.Barrier(2, timeout=30)

    def put(self, key: str, data: bytes) -> None:
        self._both.wait()
        super().put(key, data)


def test_one_worker_encodes_two_segments_at_once(tmp_path: Path) -> None:
    """What the Ray actor does with a lane (two threads in one process): both segments
    are encoded whole, each thread with its own transcoders."""
    from media.segmenter import Segmenter

    settings = Settings(data_dir=tmp_path, x264_preset="ultrafast", media_max_height=360)
    clip = synthetic(frames=8, gop=8, size=(320, 180))
    [source] = list(Segmenter(io.BytesIO(clip), format="flv"))
    renditions, _ = ladder_for(
        {"quality": "1080p"}, settings, source.width, source.height, source.fps
    )
    worker = SegmentWorker(settings, storage=Together(tmp_path / "media"))
    jobs = [SegmentJob(f"s{n}", n, renditions, source.frames, moderation_fps=0) for n in (0, 1)]
    with ThreadPoolExecutor(2) as threads:
        results = list(threads.map(worker.process, jobs, [source.data] * 2))
    for job, result in zip(jobs, results, strict=True):
        assert result.error is None and result.source_sequence == job.source_sequence
        assert result.timings["cpu_shared"] == 1.0  # its CPU figure counts the other's
        [out] = result.renditions
        with av.open(str(tmp_path / "media" / out.key)) as played:
            assert sum(1 for _ in played.decode(video=0)) == source.frames == out.frames


class Signalling:
    """An enhancer that changes nothing: its first call says the upper-rung job is
    encoding, then waits until the test lets the lowest rung start."""

    def __init__(self) -> None:
        self.encoding, self.go = threading.Event(), threading.Event()

    def enhance(self, frames: Any, config: Any) -> Any:
        self.encoding.set()
        assert self.go.wait(30)
        return frames


@pytest.mark.parametrize("yields", [True, False])
def test_an_upper_rung_job_yields_to_the_lowest_rung_beside_it(
    tmp_path: Path, yields: bool
) -> None:
    """With `media_lane_yield`, an upper-rung job waits between frames while a
    lowest-rung job encodes beside it, so the lowest rung has the worker's CPUs; the
    upper job then finishes whole. Off, it never waits."""
    from media.segmenter import Segmenter

    settings = Settings(
        data_dir=tmp_path, x264_preset="ultrafast", media_max_height=360, media_lane_yield=yields
    )
    clip = synthetic(frames=60, gop=60, size=(320, 180))
    [source] = list(Segmenter(io.BytesIO(clip), format="flv"))
    ladder, _ = ladder_for({"quality": "1080p"}, settings, source.width, source.height, 30)
    enhancer = Signalling()
    worker = SegmentWorker(
        settings, storage=LocalStorage(tmp_path / "media"), enhancer_factory=lambda: enhancer
    )
    job = SegmentJob("s", 0, ladder, source.frames, moderation_fps=0)
    upper = dataclasses.replace(job, part="upper", denoise=True)  # the hook: our signal
    with ThreadPoolExecutor(1) as thread:
        upper_done = thread.submit(worker.process, upper, source.data)
        assert enhancer.encoding.wait(30)
        enhancer.go.set()
        lowest = worker.process(dataclasses.replace(job, part="lowest"), source.data)
        upper_running = not upper_done.done()
        result = upper_done.result(timeout=60)
    assert lowest.error is None and result.error is None
    assert [r.frames for r in result.renditions] == [source.frames] * len(ladder)
    if yields:
        assert upper_running and result.timings["yielded"] > 0
    else:
        assert result.timings["yielded"] == 0


async def test_a_job_carries_when_the_pool_handed_it_to_a_worker() -> None:
    """The worker's `timings` split a job's wait: the pool's queue, then the call
    reaching the worker (`dispatch`), from the stamp the pool puts on the job."""
    workers = Workers()
    pool = lane_pool(workers)
    busy = submit(pool, 0, "whole")
    first = await workers.next_call()
    queued = submit(pool, 1, "whole")  # waits: nothing runs beside a whole job
    await waiting(pool, 1)
    before = time.time()
    first.finish()
    second = await workers.next_call()
    assert first.job.dispatched_at and before <= second.job.dispatched_at <= time.time()
    second.finish()
    await settled(busy, queued)
    pool.shutdown()


def test_the_worker_reports_the_dispatch_inside_the_queue(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    worker = SegmentWorker(settings, storage=LocalStorage(tmp_path / "media"))
    now = time.time()
    job = SegmentJob("s", 0, (), 0, moderation_fps=0, submitted_at=now - 2, dispatched_at=now - 1)
    timings = worker.process(job, b"").timings
    assert 1000 <= timings["dispatch"] < timings["queue"] < 3000
    unstamped = SegmentJob("s", 0, (), 0, moderation_fps=0)
    assert "dispatch" not in worker.process(unstamped, b"").timings
