"""The media pool's scheduling without Ray: workers come from an in-memory
`WorkerFactory` whose segments end (or whose workers die) when the test says so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors.media_worker import SegmentJob, SegmentOutcome, SegmentResult
from actors.segment_pool import SegmentPool, WorkerDied


@dataclass(eq=False)
class Worker:
    name: str
    alive: bool = True


@dataclass
class Call:
    """One segment running on one worker, until `finish()` or `die()`."""

    worker: Worker
    job: SegmentJob
    ended: asyncio.Future[SegmentResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def sequence(self) -> int:
        return self.job.source_sequence

    def finish(self) -> None:
        self.ended.set_result(SegmentResult(self.job.source_sequence, worker=self.worker.name))

    def die(self) -> None:
        self.ended.set_exception(WorkerDied(f"{self.worker.name} died"))


@dataclass
class Workers:
    """The pool's WorkerFactory: counts what the pool does with its workers."""

    spawned: list[Worker] = field(default_factory=list)
    killed: list[Worker] = field(default_factory=list)
    calls: asyncio.Queue[Call] = field(default_factory=asyncio.Queue)
    running: int = 0
    most_running: int = 0

    @property
    def alive(self) -> int:
        return len(self.spawned) - len(self.killed)

    def spawn(self) -> Worker:
        worker = Worker(f"w{len(self.spawned)}")
        self.spawned.append(worker)
        return worker

    def share(self, data: bytes) -> Any:
        return data

    async def process(self, worker: Worker, job: SegmentJob, data: Any) -> SegmentResult:
        assert worker.alive, "a killed worker got a segment"
        call = Call(worker, job)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self.calls.put_nowait(call)
        try:
            return await call.ended
        finally:
            self.running -= 1

    def kill(self, worker: Worker) -> None:
        worker.alive = False
        self.killed.append(worker)

    async def next_call(self) -> Call:
        async with asyncio.timeout(2):
            return await self.calls.get()


def job(sequence: int) -> SegmentJob:
    """A segment cut at time `sequence`: a lower sequence is an older segment."""
    return SegmentJob("s", sequence, (), 0, submitted_at=float(sequence))


def submit(pool: SegmentPool[Worker], sequence: int) -> asyncio.Task[SegmentOutcome]:
    return asyncio.create_task(pool.run(job(sequence), b"ts"))


async def settled(*tasks: asyncio.Task[SegmentOutcome]) -> list[SegmentOutcome]:
    """The tasks' outcomes; a pool that lost a segment fails here instead of hanging."""
    async with asyncio.timeout(2):
        return await asyncio.gather(*tasks)


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def test_a_free_worker_takes_the_oldest_waiting_segment() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=1, idle_s=60)
    first = submit(pool, 0)
    running = await workers.next_call()
    waiting = [submit(pool, n) for n in (3, 1, 2)]  # queued out of order
    await until(lambda: pool.status()["waiting"] == 3, "three waiting segments")

    order = []
    for _ in range(4):
        running.finish()
        order.append(running.sequence)
        if len(order) < 4:
            running = await workers.next_call()
    assert order == [0, 1, 2, 3]
    outcomes = await settled(first, *waiting)
    assert [o.result.source_sequence for o in outcomes] == [0, 3, 1, 2]
    assert all(o.retries == 0 for o in outcomes)
    assert len(workers.spawned) == 1 and pool.completed == 4
    pool.shutdown()


async def test_a_segment_whose_worker_dies_is_retried_ahead_of_newer_ones() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=1, idle_s=60)
    old = submit(pool, 0)
    dying = await workers.next_call()
    newer, newest = submit(pool, 1), submit(pool, 2)
    await until(lambda: pool.status()["waiting"] == 2, "two waiting segments")

    dying.die()  # its replacement goes to the oldest waiting segment at once
    call = await workers.next_call()
    assert (call.sequence, call.worker.name) == (1, "w1")
    call.finish()
    call = await workers.next_call()  # the retry, ahead of the newest
    assert (call.sequence, call.worker.name) == (0, "w1")
    call.finish()
    call = await workers.next_call()
    assert call.sequence == 2
    call.finish()

    outcomes = await settled(old, newer, newest)
    assert [o.retries for o in outcomes] == [1, 0, 0]
    assert workers.killed == [dying.worker] and pool.retried == 1
    assert pool.status()["workers"] == 1
    pool.shutdown()


async def test_a_segment_is_given_up_after_max_attempts() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=2, idle_s=60, max_attempts=2)
    task = submit(pool, 0)
    (await workers.next_call()).die()
    (await workers.next_call()).die()
    with pytest.raises(WorkerDied):
        await settled(task)
    assert len(workers.spawned) == 2 and workers.killed == workers.spawned
    assert pool.retried == 2 and pool.completed == 0
    assert pool.status()["workers"] == 0 and pool.status()["busy"] == []


async def test_a_dead_worker_is_replaced_only_when_a_segment_needs_one() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=1, idle_s=60, max_attempts=1)
    task = submit(pool, 0)
    (await workers.next_call()).die()
    with pytest.raises(WorkerDied):
        await settled(task)
    assert len(workers.spawned) == 1 and pool.status()["workers"] == 0  # nothing made yet

    task = submit(pool, 1)
    call = await workers.next_call()
    assert call.worker is workers.spawned[1]
    call.finish()
    assert (await settled(task))[0].result.source_sequence == 1
    pool.shutdown()


async def test_idle_workers_are_retired_once_nothing_is_running() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=2, idle_s=0)
    tasks = [submit(pool, 0), submit(pool, 1)]
    first, second = await workers.next_call(), await workers.next_call()
    first.finish()
    await settled(tasks[0])
    for _ in range(10):  # one is idle, but the other still runs: nobody is retired
        await asyncio.sleep(0)
    assert workers.killed == [] and pool.status()["workers"] == 2

    second.finish()
    await settled(tasks[1])
    await until(lambda: pool.status()["workers"] == 0, "the idle workers to retire")
    assert set(workers.killed) == set(workers.spawned) and pool.status()["idle"] == []

    task = submit(pool, 2)  # and new work gets a new worker
    (await workers.next_call()).finish()
    await settled(task)
    assert len(workers.spawned) == 3
    pool.shutdown()


async def test_never_more_than_size_workers_even_as_they_die() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=3, idle_s=60, max_attempts=5)
    tasks = [submit(pool, n) for n in range(10)]
    for i in range(13):  # every fourth call dies: 3 retries
        call = await workers.next_call()
        assert workers.alive <= 3 and workers.running <= 3
        call.die() if i % 4 == 3 else call.finish()
    outcomes = await settled(*tasks)
    assert sorted(o.result.source_sequence for o in outcomes) == list(range(10))
    assert sum(o.retries for o in outcomes) == 3 == pool.retried
    assert workers.most_running == 3 and pool.status()["workers"] <= 3
    pool.shutdown()


async def test_a_cancelled_waiting_segment_leaves_the_queue() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=1, idle_s=60)
    running = submit(pool, 0)
    call = await workers.next_call()
    given_up, later = submit(pool, 1), submit(pool, 2)
    await until(lambda: pool.status()["waiting"] == 2, "two waiting segments")
    given_up.cancel()
    await asyncio.gather(given_up, return_exceptions=True)
    assert pool.status()["waiting"] == 1
    call.finish()
    call = await workers.next_call()
    assert call.sequence == 2
    call.finish()
    await settled(running, later)
    pool.shutdown()
