"""What publishing the lowest rung apart costs (`actors.lowest_first`): the same
segments through one in-process `SegmentWorker`, as one job per segment (every rung)
and as two (the lowest rung; the rest), side by side.

Each job decodes the segment, so the split decodes it twice; nothing is encoded twice.
The figure that matters is the CPU of the worker process (`timings["cpu"]`,
`time.process_time`: steadier than wall time on a shared machine), summed over the
segments; the wall time of the lowest rung's job is how soon it can be published.

    .venv/bin/python -m bench.split_cost            # 1080p25 source, 4 x 2 s, veryfast
    .venv/bin/python -m bench.split_cost --quick    # smoke: 480p10, 3 x 2 s, ultrafast
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from actors.lowest_first import split_lowest
from actors.media_worker import SegmentJob, SegmentWorker
from lumalive.settings import Settings
from media.ladder import plan
from media.segmenter import Segmenter, SourceSegment
from tests.utils.media import synthetic

__all__ = ["main"]


def _cpu(worker: SegmentWorker, jobs: list[SegmentJob], data: bytes) -> tuple[float, float]:
    """CPU ms of the jobs, and wall ms of the first."""
    cpu, first_wall = 0.0, 0.0
    for i, job in enumerate(jobs):
        t = time.perf_counter()
        result = worker.process(job, data)
        assert result.error is None, result.error
        cpu += float(result.timings["cpu"])
        if i == 0:
            first_wall = (time.perf_counter() - t) * 1000
    return cpu, first_wall


def _measure(
    worker: SegmentWorker, segments: list[SourceSegment], tier: str, rounds: int
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"whole": [], "split": [], "whole_first": [], "split_first": []}
    for seg in segments:
        ladder, _ = plan(seg.width, seg.height, tier, False, fps=seg.fps)
        job = SegmentJob("bench", seg.sequence, ladder, seg.frames, 0.0)
        first, rest = split_lowest(job, 2.0)
        parts = [first, *([rest] if rest else [])]
        for _ in range(rounds):  # interleaved, so load on the machine hits both alike
            cpu, wall = _cpu(worker, [job], seg.data)
            out["whole"].append(cpu)
            out["whole_first"].append(wall)
            cpu, wall = _cpu(worker, parts, seg.data)
            out["split"].append(cpu)
            out["split_first"].append(wall)
    return out


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
        m = _measure(worker, segments, tier, args.rounds)
    whole, split = sum(m["whole"]), sum(m["split"])
    print("\n| jobs per segment | CPU total (ms) | ratio | lowest rung ready (ms, median) |")
    print("|---|---|---|---|")
    print(f"| one (every rung) | {whole:.0f} | 1.00 | {statistics.median(m['whole_first']):.0f} |")
    print(
        f"| two (lowest; rest) | {split:.0f} | {split / whole:.2f} |"
        f" {statistics.median(m['split_first']):.0f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
