"""The pool's reserve (`actors.segment_pool`): with two or more workers, upper-rung jobs
(`SegmentJob.part == "upper"`, `actors.lowest_first`) hold at most all but one, so a
lowest rung never waits because upper rungs hold every worker. Workers come from the
in-memory factory of tests/unit/test_media_pool.py: segments end when the test says."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Literal

from actors.lowest_first import split_lowest
from actors.media_worker import SegmentJob, SegmentOutcome
from actors.segment_pool import SegmentPool
from media.tier_plan import plan
from tests.unit.test_media_pool import Call, Worker, Workers, settled, until

Part = Literal["whole", "lowest", "upper"]


def submit(pool: SegmentPool[Worker], sequence: int, part: Part) -> asyncio.Task[SegmentOutcome]:
    """A job cut at time `sequence` (lower: older), of one part of its segment."""
    job = SegmentJob("s", sequence, (), 0, submitted_at=float(sequence), part=part)
    return asyncio.create_task(pool.run(job, b"ts"))


async def waiting(pool: SegmentPool[Worker], n: int) -> None:
    await until(lambda: pool.status()["waiting"] == n, f"{n} waiting jobs")


async def test_upper_rungs_leave_one_worker_for_the_lowest_rung() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=2, idle_s=60)
    upper = [submit(pool, 0, "upper"), submit(pool, 1, "upper")]
    first = await workers.next_call()
    await waiting(pool, 1)  # the second worker is not made for it: it is the reserve
    assert len(workers.spawned) == 1 and pool.status()["upper_busy"] == 1
    # Nothing runs the next lowest rung yet, so it would not wait: not `full`.
    assert pool.backlog().waiting == 1 and not pool.backlog().full

    lowest = submit(pool, 2, "lowest")  # younger than the waiting upper rung, served first
    call = await workers.next_call()
    assert (call.sequence, call.job.part, call.worker.name) == (2, "lowest", "w1")
    call.finish()
    await settled(lowest)
    await until(lambda: len(pool.status()["idle"]) == 1, "the reserve to be idle")
    assert pool.status()["waiting"] == 1  # the idle worker is not the upper rung's to take

    first.finish()  # an upper rung's worker frees: the waiting upper rung takes it
    call = await workers.next_call()
    assert call.sequence == 1 and pool.status()["upper_busy"] == 1
    call.finish()
    await settled(*upper)
    assert workers.most_running == 2 and pool.completed == 3
    pool.shutdown()


async def test_a_freed_worker_goes_to_the_oldest_waiter_allowed_to_take_it() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=2, idle_s=60)
    tasks = [submit(pool, 0, "upper"), submit(pool, 1, "lowest")]
    upper0, lowest1 = await workers.next_call(), await workers.next_call()
    tasks += [submit(pool, 2, "upper"), submit(pool, 3, "lowest"), submit(pool, 4, "upper")]
    await waiting(pool, 3)

    lowest1.finish()  # upper 2 is older, but upper rungs hold their one worker: lowest 3
    call = await workers.next_call()
    assert call.sequence == 3 and call.worker is lowest1.worker
    upper0.finish()  # an upper rung's worker: the oldest waiter, upper 2 (before upper 4)
    call2 = await workers.next_call()
    assert call2.sequence == 2 and call2.worker is upper0.worker
    call.finish()  # the reserve frees; upper 4 still may not take it
    for _ in range(10):
        await asyncio.sleep(0)
    assert pool.status()["waiting"] == 1 and pool.status()["upper_busy"] == 1
    call2.finish()
    (await workers.next_call()).finish()
    outcomes = await settled(*tasks)
    assert [o.result.source_sequence for o in outcomes] == [0, 1, 2, 3, 4]
    pool.shutdown()


async def test_whole_jobs_and_a_single_worker_are_not_held_back() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=2, idle_s=60)  # unsplit segments take any worker
    tasks = [submit(pool, n, "whole") for n in range(2)]
    calls = [await workers.next_call(), await workers.next_call()]
    assert workers.running == 2
    for call in calls:
        call.finish()
    await settled(*tasks)
    pool.shutdown()

    workers = Workers()
    pool = SegmentPool(workers, size=1, idle_s=60)  # one worker: no reserve to keep
    task = submit(pool, 0, "upper")
    (await workers.next_call()).finish()
    await settled(task)
    pool.shutdown()


async def test_without_the_reserve_upper_rungs_take_every_worker() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=2, idle_s=60, reserve=False)
    tasks = [submit(pool, 0, "upper"), submit(pool, 1, "upper"), submit(pool, 2, "lowest")]
    calls = [await workers.next_call(), await workers.next_call()]
    assert {c.sequence for c in calls} == {0, 1}  # the lowest rung waits behind them
    await waiting(pool, 1)
    for call in calls:
        call.finish()
    (await workers.next_call()).finish()
    await settled(*tasks)
    pool.shutdown()


async def test_a_dead_upper_worker_gives_its_place_back() -> None:
    """An upper rung's worker dies: the retry is an upper rung still, and the count of
    workers upper rungs hold is right after it (no leaked or lost place)."""
    workers = Workers()
    pool = SegmentPool(workers, size=2, idle_s=60)
    upper = submit(pool, 0, "upper")
    (await workers.next_call()).die()
    retry = await workers.next_call()
    assert (retry.sequence, retry.worker.name) == (0, "w1")
    assert pool.status()["upper_busy"] == 1
    lowest = submit(pool, 1, "lowest")  # the reserve is still there
    (await workers.next_call()).finish()
    retry.finish()
    outcomes = await settled(upper, lowest)
    assert outcomes[0].retries == 1 and pool.status()["upper_busy"] == 0
    pool.shutdown()


async def test_a_cancelled_upper_rung_leaves_the_queue() -> None:
    workers = Workers()
    pool = SegmentPool(workers, size=2, idle_s=60)
    running = submit(pool, 0, "upper")
    call = await workers.next_call()
    given_up = submit(pool, 1, "upper")
    await waiting(pool, 1)
    given_up.cancel()
    await asyncio.gather(given_up, return_exceptions=True)
    assert pool.status()["waiting"] == 0
    call.finish()
    await settled(running)
    assert pool.status()["upper_busy"] == 0
    pool.shutdown()


async def test_under_churn_upper_rungs_never_hold_the_reserve() -> None:
    """Many segments of both parts, finishing in random order, some workers dying: at
    every moment at most size - 1 upper rungs run, and every job ends."""
    rng = random.Random(9)
    workers = Workers()
    pool = SegmentPool(workers, size=3, idle_s=60, max_attempts=5)
    tasks = [submit(pool, n // 2, ("lowest", "upper")[n % 2]) for n in range(24)]
    running: list[Call] = []
    most_upper = 0
    deaths = 0
    while not all(t.done() for t in tasks):
        while not workers.calls.empty():
            running.append(workers.calls.get_nowait())
        upper = sum(c.job.part == "upper" and not c.ended.done() for c in running)
        most_upper = max(most_upper, upper)
        assert upper <= 2 and workers.alive <= 3
        live = [c for c in running if not c.ended.done()]
        if live:
            call = rng.choice(live)
            if deaths < 3 and rng.random() < 0.15:
                deaths += 1
                call.die()
            else:
                call.finish()
        for _ in range(5):
            await asyncio.sleep(0)
    outcomes = await settled(*tasks)
    assert len(outcomes) == 24 and pool.retried == deaths
    assert most_upper == 2 and pool.status()["upper_busy"] == 0
    pool.shutdown()


def test_the_split_marks_which_job_may_take_the_reserve() -> None:
    ladder, _ = plan(854, 480, "1080p", False, fps=10)  # 480p, 360p
    job = SegmentJob("s", 0, tuple(ladder), 20)
    first, rest = split_lowest(job, 2.0)
    assert rest is not None
    assert (first.part, [r.name for r in first.renditions]) == ("lowest", ["360p"])
    assert (rest.part, [r.name for r in rest.renditions]) == ("upper", ["480p"])
    alone, none = split_lowest(dataclasses.replace(job, renditions=first.renditions), 2.0)
    # The lowest rung alone (the rest shed): still a lowest-rung job, which may take a
    # lane beside an upper-rung job still running (as "whole" it waited for it).
    assert none is None and alone.part == "lowest" and alone.moderation_fps == 1.0
