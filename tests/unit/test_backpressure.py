"""The backpressure controller with a fake clock: the order rungs are shed in, the
hysteresis, the lowest rung never shed, and the restore."""

from __future__ import annotations

import asyncio

from actors.backpressure import Backlog, BackpressureController, Thresholds, shedding_steps
from actors.lowest_first import split_lowest
from actors.media_worker import SegmentJob, SegmentResult
from actors.segment_pool import SegmentPool
from media.hdr import hdr_renditions
from media.ladder import Rendition, build_ladder
from media.playlist import SegmentRecord, media_playlist
from media.rendition import lowest_rung

D = 2.0  # segment seconds
OVER = Backlog(waiting=3, oldest_submitted_at=0.0)  # ages are measured against `now`
CALM = Backlog()


def ladder(ai: bool = True) -> tuple[Rendition, ...]:
    """A 1080p source on the 8K tier: 8K and 4K by AI, then 1080p .. 360p."""
    renditions, _ = build_ladder(1920, 1080, "8K", ai, fps=30.0)
    return renditions


def controller(ai: bool = True, **thresholds: float) -> BackpressureController:
    return BackpressureController(shedding_steps(ladder(ai)), D, Thresholds(**thresholds))  # type: ignore[arg-type]


def drive(c: BackpressureController, readings: list[tuple[float, Backlog]]) -> list[int]:
    return [(c.observe(t, b), c.level)[1] for t, b in readings]


def test_order_ai_rungs_first_then_top_down_never_the_lowest() -> None:
    names = [r.name for r in ladder()]
    assert names[:2] == ["8K", "4K"] and all(r.needs_upscale for r in ladder()[:2])
    steps = shedding_steps(ladder())
    assert steps[0] == ("8K", "4K")  # every AI rung in the first step
    assert steps[1:] == tuple((n,) for n in names[2:-1])  # then from the top, one at a time
    assert all(names[-1] not in step for step in steps)
    # Without AI rungs the top rung goes first; a one-rung ladder sheds nothing.
    plain = [r.name for r in ladder(ai=False)]
    assert shedding_steps(ladder(ai=False)) == tuple((n,) for n in plain[:-1])
    assert shedding_steps(ladder()[-1:]) == ()


def test_an_hdr_ladder_keeps_its_lowest_sdr_rung_and_sheds_the_hevc_twins_first() -> None:
    """enableHDR appends HEVC twins after the SDR rungs: the rung every player plays is
    the lowest SDR one, published first (`split_lowest`) and never shed."""
    sdr = ladder(ai=False)[-2:]  # 480p, 360p
    hdr = hdr_renditions(sdr, "PQ")
    assert lowest_rung(hdr) is sdr[-1]
    steps = shedding_steps(hdr)
    assert steps == ((sdr[0].name + "-hdr",), (sdr[1].name + "-hdr",), (sdr[0].name,))
    first, rest = split_lowest(SegmentJob("s", 0, hdr, 20), D)
    assert first.renditions == (sdr[-1],) and rest is not None
    assert sdr[-1] not in rest.renditions and len(rest.renditions) == 3


def test_first_step_at_once_then_one_step_per_escalation_interval() -> None:
    c = controller()
    change = c.observe(10.0, OVER)
    assert change is not None and change.action == "degraded"
    assert (change.previous, change.level, change.shed) == (0, 1, ("8K", "4K"))
    # Still overloaded, but the shed level's jobs have not shown their effect yet.
    assert c.observe(10.0 + D, OVER) is None and c.level == 1
    change = c.observe(10.0 + 2 * D, OVER)  # escalate_segments = 2
    assert change is not None and change.level == 2 and change.shed == ("8K", "4K", "1080p")


def test_the_age_of_the_oldest_waiting_segment_alone_degrades() -> None:
    c = controller()
    one = Backlog(waiting=1, oldest_submitted_at=100.0)
    assert c.observe(100.0 + 0.5 * D, one) is None  # waited half a segment: fine
    assert c.observe(100.0 + 1.0 * D, one) is not None and c.level == 1


def test_lowest_rung_is_never_shed_however_long_the_overload() -> None:
    c = controller()
    levels = drive(c, [(t * D, OVER) for t in range(40)])
    assert max(levels) == c.max_level == len(shedding_steps(ladder()))
    assert levels == sorted(levels)  # only ever up under overload
    assert ladder()[-1].name not in c.shed
    assert set(c.shed) == {r.name for r in ladder()[:-1]}


def test_restore_needs_a_calm_hold_and_goes_one_step_at_a_time() -> None:
    c = controller()
    drive(c, [(0.0, OVER), (2 * D, OVER)])
    assert c.level == 2
    hold = 4 * D  # restore_segments
    # Calm readings shorter than the hold change nothing.
    assert drive(c, [(3 * D, CALM), (3 * D + hold - 0.1, CALM)]) == [2, 2]
    change = c.observe(3 * D + hold, CALM)
    assert change is not None and change.action == "restored" and change.level == 1
    assert change.shed == ("8K", "4K")
    # The next step back needs another whole hold.
    assert c.observe(3 * D + hold + D, CALM) is None
    change = c.observe(3 * D + 2 * hold, CALM)
    assert change is not None and change.level == 0 and change.shed == ()
    event = change.event(17, c.max_level)
    assert event["action"] == "restored" and event["level"] == 0 and event["source_sequence"] == 17


def test_hysteresis_one_waiting_segment_neither_degrades_nor_counts_as_calm() -> None:
    c = controller()
    c.observe(0.0, OVER)
    busy = [(t, Backlog(waiting=1, oldest_submitted_at=t - 0.1)) for t in range(1, 60)]
    assert set(drive(c, busy)) == {1}  # no flapping either way
    # A single waiting segment interrupts a calm hold: it starts again.
    hold = 4 * D
    drive(c, [(100.0, CALM), (100.0 + hold - 1, Backlog(1, 100.0 + hold - 1.1))])
    assert c.observe(100.0 + hold, CALM) is None and c.level == 1


def test_a_restore_that_overloads_again_doubles_the_next_hold() -> None:
    c = controller()
    c.observe(0.0, OVER)
    hold = 4 * D
    drive(c, [(1.0, CALM), (1.0 + hold, CALM)])
    assert c.level == 0
    c.observe(2.0 + hold, OVER)  # the rung came back too early
    assert c.level == 1
    t = 3.0 + hold
    assert drive(c, [(t, CALM), (t + hold, CALM)]) == [1, 1]  # the old hold: not enough
    assert drive(c, [(t + 2 * hold, CALM)]) == [0]


def test_the_pool_reports_segments_waiting_for_a_worker() -> None:
    """`SegmentPool.backlog`: only segments not yet running, with the oldest's cut time."""

    class Slow:
        def spawn(self) -> object:
            return object()

        def share(self, data: bytes) -> bytes:
            return data

        async def process(self, worker: object, job: SegmentJob, data: bytes) -> SegmentResult:
            await asyncio.sleep(0.05)
            return SegmentResult(job.source_sequence)

        def kill(self, worker: object) -> None:
            pass

    async def main() -> list[Backlog]:
        pool = SegmentPool(Slow(), size=1, idle_s=60)
        jobs = [SegmentJob("s", i, (), 1, submitted_at=100.0 + i) for i in range(3)]
        tasks = [asyncio.create_task(pool.run(j, b"")) for j in jobs]
        await asyncio.sleep(0.01)
        seen = [pool.backlog()]
        await asyncio.gather(*tasks)
        return [*seen, pool.backlog()]

    during, after = asyncio.run(main())
    assert during == Backlog(2, 101.0, full=True)  # one running, two waiting, oldest at 101
    assert after == Backlog(0, None)


def test_a_full_pool_counts_the_segment_being_cut() -> None:
    """One job waiting behind busy workers: the segment being cut waits too, so that is
    two queued (`degrade_waiting`) and the first step is taken now, not a segment later.
    With a free worker, one waiting job is not an overload."""
    one = Backlog(waiting=1, oldest_submitted_at=100.0)
    full = Backlog(waiting=1, oldest_submitted_at=100.0, full=True)
    assert drive(controller(), [(100.5, one)]) == [0]
    assert drive(controller(), [(100.5, full)]) == [1]
    assert drive(controller(), [(100.5, Backlog(full=True))]) == [0]  # busy, nothing waits


def test_a_shed_segment_is_an_ext_x_gap_and_keeps_the_numbering() -> None:
    records = [SegmentRecord(s, f"{s:08d}.ts", 2.0, gap=s == 6) for s in (5, 6, 7)]
    lines = media_playlist(records).splitlines()
    assert "#EXT-X-MEDIA-SEQUENCE:5" in lines
    gap = lines.index("#EXT-X-GAP")
    assert lines[gap + 1 : gap + 3] == ["#EXTINF:2.00000,", "00000006.ts"]
    assert lines.count("#EXT-X-GAP") == 1 and lines.count("#EXTINF:2.00000,") == 3
