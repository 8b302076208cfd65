"""What publishing the lowest rung apart costs (`actors.lowest_first`), and what
splitting the rest per rung would: the same segments through one in-process
`SegmentWorker`, as one job per segment (every rung), as two (the lowest rung; the
rest: what the pipeline does) and as one per rung (the lowest; each upper rung), side
by side.

Each job decodes the segment, so the split decodes it twice and the per-rung split
once per rung; nothing is encoded twice. The figure that matters for the cost is the
CPU of the worker process (`timings["cpu"]`, `time.process_time`: steadier than wall
time on a shared machine), summed over the segments; the wall time of the lowest
rung's job is how soon it can be published. On a pool of one worker (no reserve:
`actors.segment_pool`) a lowest rung cut just as an upper-rung job starts waits for
all of it: "worst wait" (median over segments of the longest upper-rung job's CPU, its
wall time on a core of its own) is that bound, per variant.

    .venv/bin/python -m bench.split_cost            # 1080p25 source, 4 x 2 s, veryfast
    .venv/bin/python -m bench.split_cost --quick    # smoke: 480p10, 3 x 2 s, ultrafast
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from actors.lowest_first import split_lowest
from actors.media_worker import SegmentJob, SegmentWorker
from lumalive.settings import Settings
from media.segmenter import Segmenter, SourceSegment
from media.tier_plan import plan
from tests.utils.media import synthetic

__all__ = ["main"]

VARIANTS = ("whole", "split", "per_rung")


def _run(worker: SegmentWorker, jobs: list[SegmentJob], data: bytes) -> tuple[list[float], float]:
    """The CPU ms of each job, and the wall ms of the first."""
    cpus, first_wall = [], 0.0
    for job in jobs:
        t = time.perf_counter()
        result = worker.process(job, data)
        assert result.error is None, result.error
        cpus.append(float(result.timings["cpu"]))
        first_wall = first_wall or (time.perf_counter() - t) * 1000
    return cpus, first_wall


def _variants(job: SegmentJob) -> dict[str, list[SegmentJob]]:
    """Each variant's jobs for one segment, the lowest rung's first."""
    first, rest = split_lowest(job, 2.0)
    if rest is None:
        return {"whole": [job], "split": [job], "per_rung": [job]}
    per_rung = [dataclasses.replace(rest, renditions=(r,)) for r in rest.renditions]
    return {"whole": [job], "split": [first, rest], "per_rung": [first, *per_rung]}


def _measure(
    worker: SegmentWorker, segments: list[SourceSegment], tier: str, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Per variant: CPU ms per segment, the lowest rung's wall ms, the longest upper
    job's CPU ms (one job: its own)."""
    out: dict[str, dict[str, list[float]]] = {
        v: {"cpu": [], "first": [], "worst": []} for v in VARIANTS
    }
    for seg in segments:
        ladder, _ = plan(seg.width, seg.height, tier, False, fps=seg.fps)
        job = SegmentJob("bench", seg.sequence, ladder, seg.frames, 0.0)
        for _ in range(rounds):  # interleaved, so load on the machine hits all alike
            for name, jobs in _variants(job).items():
                cpus, wall = _run(worker, jobs, seg.data)
                out[name]["cpu"].append(sum(cpus))
                out[name]["first"].append(wall)
                out[name]["worst"].append(max(cpus[1:], default=cpus[0]))
    return out


def _report(m: dict[str, dict[str, list[float]]]) -> None:
    whole = sum(m["whole"]["cpu"])
    labels = {
        "whole": "one (every rung)",
        "split": "two (lowest; rest)",
        "per_rung": "one per rung (lowest; each upper)",
    }
    print(
        "\n| jobs per segment | CPU total (ms) | ratio | lowest rung ready (ms, median) |"
        " worst wait on one worker (CPU ms, median) | ratio to two |"
    )
    print("|---|---|---|---|---|---|")
    two = statistics.median(m["split"]["worst"])
    for name, label in labels.items():
        cpu, worst = sum(m[name]["cpu"]), statistics.median(m[name]["worst"])
        print(
            f"| {label} | {cpu:.0f} | {cpu / whole:.2f} |"
            f" {statistics.median(m[name]['first']):.0f} | {worst:.0f} | {worst / two:.2f} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    size, fps, n, preset, tier = (1920, 1080), 25, 4, "veryfast", "1080p"
    if args.quick:
        size, fps, n, preset, tier = (854, 480), 10, 3, "ultrafast", "1080p"
    gop = 2 * fps
    data = synthetic(frames=n * gop, gop=gop, size=size, fps=fps)
    segments = list(Segmenter(io.BytesIO(data), format="flv"))
    with tempfile.TemporaryDirectory(prefix="split-cost-") as tmp:
        settings = Settings(
            data_dir=Path(tmp), x264_preset=preset, media_worker_cpus=1, database_url=None
        )
        worker = SegmentWorker(settings)
        ladder, _ = plan(*size, tier, False, fps=fps)
        print(
            f"{n} segments of {size[0]}x{size[1]}@{fps}, ladder {[r.name for r in ladder]},"
            f" {preset}, one x264 thread, {args.rounds} rounds"
        )
        _report(_measure(worker, segments, tier, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
