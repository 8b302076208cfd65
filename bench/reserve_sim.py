"""The pool's reserve and lowest-rung lane (`actors.segment_pool`) on a model of the
work, without Ray: the real `SegmentPool` and `BackpressureController`, workers that
sleep for what a job would cost, segments cut once per segment duration. Reserve and
lane off and on side by side, for one and two workers.

Why a model: it isolates the scheduling (the reserve) from the machine's noise, and it
needs no cluster. `bench/overload.py --workers 2 --reserve both` is the real thing.

Costs per 1 s segment, single-thread CPU seconds, from `bench/split_cost.py` (1080p25
veryfast; rest 1.245 s, of which the 1080p job 0.64 s; the lowest rung's job 0.195 s);
the 720p/480p split of the rest is estimated by pixels. `--speed` scales time down;
`--loaded` multiplies every cost (a core shared with other work: two workers are then
overloaded too, as on the loaded 2-core box).

Each worker is one core shared equally by the jobs it runs (processor sharing): a
lowest rung in the lane beside an upper-rung job runs at half speed, and slows that job
to half speed, while both run. That is the contention the lane costs; it assumes the
two jobs' threads get equal shares of the core, and no cost for switching between them.
With the yield (`--yield`, `actors.worker_lane.LaneYield`, the shipped default), the
upper-rung job stops while the lowest rung beside it runs, which then has the whole core.

    .venv/bin/python -m bench.reserve_sim            # 60 segments, 10x faster than real
    .venv/bin/python -m bench.reserve_sim --quick    # 20 segments
    .venv/bin/python -m bench.reserve_sim --reserve off --lane both   # the lane alone
    .venv/bin/python -m bench.reserve_sim --reserve off --lane on --yield both
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from actors.backpressure import BackpressureController
from actors.media_worker import SegmentJob, SegmentResult
from actors.segment_pool import SegmentPool

__all__ = ["main"]

LOWEST_S = 0.195
UPPER_S = {"1080p": 0.64, "720p": 0.36, "480p": 0.245}  # shed in this order
STEPS = tuple((name,) for name in UPPER_S)
DEFER_SEGMENTS = 30.0  # actors.lowest_first.REST_DEFER_SEGMENTS


class Core:
    """One worker's core, shared equally by the jobs running on it: each one's remaining
    work (core seconds) goes down at `speed / n` per second while `n` run. With `yields`,
    jobs marked `first` (lowest rungs) run alone while there are any."""

    def __init__(self, speed: float, yields: bool = False) -> None:
        self.speed = speed
        self.yields = yields
        self.left: dict[asyncio.Future[None], float] = {}
        self.first: set[asyncio.Future[None]] = set()
        self.at = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None

    async def run(self, cost: float, first: bool = False) -> None:
        self._advance()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.left[done] = cost
        if first:
            self.first.add(done)
        self._schedule()
        await done

    def _running(self) -> list[asyncio.Future[None]]:
        if self.yields and self.first:
            return list(self.first)
        return list(self.left)

    def _advance(self) -> None:
        now = time.monotonic()
        running = self._running()
        for job in running:
            self.left[job] -= (now - self.at) * self.speed / len(running)
        self.at = now

    def _schedule(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None
        running = self._running()
        if running:
            first = min(self.left[job] for job in running)
            delay = max(0.0, first) * len(running) / self.speed
            self.timer = asyncio.get_running_loop().call_later(delay, self._finish)

    def _finish(self) -> None:
        self._advance()
        for job, left in list(self.left.items()):
            if left <= 1e-6:
                del self.left[job]
                self.first.discard(job)
                job.set_result(None)
        self._schedule()


class Sleepers:
    """Workers that take a job's modelled cost (its renditions' names) as sleep, on
    a `Core` each."""

    def __init__(self, speed: float, scale: float, yields: bool = False) -> None:
        self.speed = speed / scale  # a slower core: every job costs `scale` times more
        self.yields = yields
        self.cores: dict[int, Core] = {}
        self.most_jobs = 0  # on one worker at once

    def spawn(self) -> int:
        worker = len(self.cores) + 1
        self.cores[worker] = Core(self.speed, self.yields)
        return worker

    def share(self, data: bytes) -> Any:
        return data

    async def process(self, worker: int, job: SegmentJob, data: Any) -> SegmentResult:
        names: tuple[str, ...] = data
        cost = LOWEST_S if job.part == "lowest" else sum(UPPER_S[n] for n in names)
        core = self.cores[worker]
        self.most_jobs = max(self.most_jobs, len(core.left) + 1)
        await core.run(cost, first=job.part == "lowest")
        return SegmentResult(job.source_sequence)

    def kill(self, worker: int) -> None:
        pass


@dataclass
class Run:
    label: str
    lowest_at: list[float] = field(default_factory=list)  # published, segment order
    latency: list[float] = field(default_factory=list)
    upper_done: int = 0  # upper-rung segments encoded
    shed_from: int | None = None
    overload_from: int | None = None
    span: float = 0.0
    most_jobs: int = 0  # on one worker at once (2: a lane was used)


async def _simulate(
    workers: int,
    arm: tuple[bool, bool, bool],
    segments: int,
    speed: float,
    scale: float,
) -> Run:
    reserve, lane, yields = arm
    sleepers = Sleepers(speed, scale, yields)
    pool = SegmentPool(sleepers, size=workers, idle_s=60, reserve=reserve, lane=lane)
    control = BackpressureController(STEPS, 1.0)
    lane_label = ("on, yield" if yields else "on") if lane else "off"
    run = Run(
        f"{workers} worker(s), costs x{scale}, reserve {'on' if reserve else 'off'},"
        f" lane {lane_label}"
    )
    start = time.monotonic()
    lowest: list[asyncio.Task[tuple[float, float, int]]] = []
    upper: list[asyncio.Task[tuple[float, float, int]]] = []

    def now() -> float:  # model seconds
        return (time.monotonic() - start) * speed

    for n in range(segments):
        await asyncio.sleep(max(0.0, n - now()) / speed)
        backlog = pool.backlog()
        control.observe(now(), backlog)
        if backlog.full and run.overload_from is None:
            run.overload_from = n
        if control.level and run.shed_from is None:
            run.shed_from = n
        names = tuple(x for x in UPPER_S if x not in control.shed)
        cut = now()
        first = SegmentJob("sim", n, (), 0, submitted_at=cut, part="lowest")
        rest = SegmentJob("sim", n, (), 0, submitted_at=cut, part="upper", defer_s=DEFER_SEGMENTS)
        lowest.append(asyncio.create_task(_timed(pool, first, names, now, cut)))
        if names:
            upper.append(asyncio.create_task(_timed(pool, rest, names, now, cut)))
    published = 0.0
    for task in lowest:  # in segment order, as the publisher does
        done_at, cut, _ = await task
        published = max(published, done_at)
        run.lowest_at.append(published)
        run.latency.append(published - cut)
    ends = [await t for t in upper]
    run.upper_done = sum(rungs for _, _, rungs in ends)
    run.span = max([e for e, _, _ in ends] + run.lowest_at)
    run.most_jobs = sleepers.most_jobs
    pool.shutdown()
    return run


async def _timed(
    pool: SegmentPool[int], job: SegmentJob, names: tuple[str, ...], now: Any, cut: float
) -> tuple[float, float, int]:
    """When the job ended and its segment was cut (model seconds), and its rungs."""
    await pool.run(job, names)  # type: ignore[arg-type]  # the names are the "bytes"
    return now(), cut, len(names)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def _report(groups: list[list[Run]]) -> None:
    """Ratios against the first run of each group (same workers and costs)."""
    print(
        "| run | lowest stall max / p95 (s) | lowest latency p50 / p95 (s) |"
        " overload / shedding from (segment) | upper rung-segments (per s) |"
        " vs first of group | jobs on a worker |"
    )
    print("|---|---|---|---|---|---|---|")
    for base, r in ((g[0], r) for g in groups for r in g):
        stalls = [b - a for a, b in zip(r.lowest_at, r.lowest_at[1:], strict=False)]
        rate = r.upper_done / r.span
        ratio = rate / (base.upper_done / base.span)
        print(
            f"| {r.label} | {max(stalls):.2f} / {_pct(stalls, 0.95):.2f} |"
            f" {_pct(r.latency, 0.5):.2f} / {_pct(r.latency, 0.95):.2f} |"
            f" {r.overload_from} / {r.shed_from} | {r.upper_done} ({rate:.2f}) |"
            f" {ratio:.2f} | {r.most_jobs} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--segments", type=int, default=60)
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--loaded", type=float, default=1.6, help="cost factor of a loaded box")
    ap.add_argument("--reserve", default="both", choices=("off", "on", "both"))
    ap.add_argument("--lane", default="both", choices=("off", "on", "both"))
    ap.add_argument("--yield", dest="yields", default="both", choices=("off", "on", "both"))
    args = ap.parse_args(argv)
    segments = 20 if args.quick else args.segments
    print(
        f"model: {segments} segments of 1 s (target duration 1 s), lowest {LOWEST_S} s,"
        f" upper {UPPER_S} s of one core, backpressure on, {args.speed:.0f}x faster\n"
    )
    arms = [
        (r, lane, y)
        for r in _switch(args.reserve)
        for lane in _switch(args.lane)
        for y in (_switch(args.yields) if lane else (False,))
    ]
    groups = [
        [
            asyncio.run(_simulate(w, arm, segments, args.speed, scale))
            for arm in arms
            if w > 1 or not arm[0]  # one worker: the reserve cannot apply
        ]
        for w, scale in ((1, 1.0), (1, args.loaded), (2, 1.0), (2, args.loaded))
    ]
    _report([g for g in groups if g])
    return 0


def _switch(value: str) -> tuple[bool, ...]:
    """off / on / both (off first: the baseline)."""
    return {"off": (False,), "on": (True,), "both": (False, True)}[value]


if __name__ == "__main__":
    sys.exit(main())
