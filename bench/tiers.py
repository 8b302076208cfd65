"""Quality tiers on this machine: source frames/s through the pipeline for a 1080p source,
per tier, per worker count, beside one single-process transcode of the same ladder.

For each tier (1080p, 4K, 8K, 20K) the plan is `plan(1920, 1080, tier, ai)`, with
AI enhancement for the tiers above the source (learned x2 super-resolution: one pass
to 4K, two to 8K), as a stream with `enableAI` gets it. Three runs per tier:

- ``pipeline xN``: the source cut into 1 s segments (`Segmenter`), each transcoded by
  a `SegmentTranscoder` with the enhancer as its frame hook (in process, tiled, frames
  in `hook_batch` batches: what a media worker does) in a pool of N processes;
- ``single``: the whole source as one segment through one transcoder in this process
  (one decoder and one encoder per rendition for the whole clip, no per-segment
  start-up: the baseline the pipeline's overhead is read against).

Each row gives wall frames/s (noisy on a shared box), frames per CPU-second (steadier:
all processes' CPU), the ratio to real time at 30 fps, and how many cores real time
at 30 fps needs at that CPU rate. The enhancer's share is reported apart (frames per
CPU-second of the hook alone). 20K is its tile set (`media.tier_plan.plan`): the 8K
ladder as one job per segment and each of the 25 tiles (4096x2304, enhanced from its
source window) as a job of its own, as `actors.tile_jobs` sends them to the pool; it
runs on fewer frames (``--frames-20k``).

Rates are written to ``bench/results/tiers.json`` (``--json``) for ``lumalive
capacity``: per tier ``{encode_fps_per_core, enhance_fps_per_core, enhance_fps_per_gpu,
measured_on, date}`` (per GPU: null here, no GPU).

    .venv/bin/python -m bench.tiers            # ~25 min on the shared 2-core box
    .venv/bin/python -m bench.tiers --quick    # smoke: 1080p and 4K, 2 frames (~2 min)

Last, the enhancer alone on the 8K AI rungs (4K and 8K from 1080p: ``--passes``), made
rung by rung (each rung's passes from the source: the 4K pass twice) and with the x2
passes shared (`Enhancer.enhance_many`, as a worker runs them): frames per CPU-second
of each and their ratio, side by side.
    .venv/bin/python -m bench.tiers --tiers 20K   # one tier; other tiers' rates are kept
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import numpy as np

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from actors.media_memory import hook_batch  # noqa: E402
from media.ladder import Rendition  # noqa: E402
from media.segmenter import Segmenter  # noqa: E402
from media.shared_passes import SharedPassHook  # noqa: E402
from media.tier_plan import plan  # noqa: E402
from media.tile_renditions import cropping_hook  # noqa: E402
from media.transcode import EncoderSettings, SegmentTranscoder  # noqa: E402
from tests.utils.media import synthetic  # noqa: E402

SOURCE = (1920, 1080)
REALTIME_FPS = 30
TIERS = ("1080p", "4K", "8K", "20K")
RESULTS = Path(__file__).resolve().parent / "results" / "tiers.json"


@dataclass
class Run:
    mode: str
    frames: int
    wall_s: float
    cpu_s: float  # every process's CPU for the run
    enhance_cpu_s: float  # the hook's share of it

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s

    @property
    def fps_per_core(self) -> float:
        return self.frames / max(self.cpu_s, 1e-9)

    @property
    def encode_fps_per_core(self) -> float:
        return self.frames / max(self.cpu_s - self.enhance_cpu_s, 1e-9)

    @property
    def enhance_fps_per_core(self) -> float | None:
        return self.frames / self.enhance_cpu_s if self.enhance_cpu_s > 0 else None


# --- one process's work ----------------------------------------------------------------

_state: dict[str, Any] = {}


def _init(preset: str) -> None:
    """Each pool process: one torch thread, its transcoders, the enhancer on first use."""
    import torch

    torch.set_num_threads(1)
    _state["preset"] = preset


def _enhancer() -> Any:
    if "enhancer" not in _state:
        from models.enhance import Enhancer

        _state["enhancer"] = Enhancer("cpu")
    return _state["enhancer"]


def transcode(data: bytes, frames: int, renditions: Sequence[Rendition]) -> tuple[float, float]:
    """One segment as a media worker does it; (CPU s, of which the hook's)."""
    from models.enhance import EnhanceConfig

    cpu0 = time.process_time()
    spent = [0.0]
    ai = any(r.needs_upscale for r in renditions)

    def hook(batch: np.ndarray, r: Rendition) -> np.ndarray:
        t = time.process_time()
        out: np.ndarray = _enhancer().enhance(batch, EnhanceConfig(target_size=(r.width, r.height)))
        spent[0] += time.process_time() - t
        return out

    def many(batch: np.ndarray, rungs: Sequence[Rendition]) -> list[np.ndarray]:
        t = time.process_time()
        configs = [EnhanceConfig(target_size=(r.width, r.height)) for r in rungs]
        out: list[np.ndarray] = _enhancer().enhance_many(batch, configs)
        spent[0] += time.process_time() - t
        return out

    settings = EncoderSettings(
        preset=_state.get("preset", "veryfast"), threads=1, hook_batch=hook_batch(renditions)
    )
    # A 20K tile is enhanced from its source window only, then cut (as a worker does).
    # The ladder's upscaled rungs share their x2 passes (`media.shared_passes`).
    shared = SharedPassHook(many, [r for r in renditions if r.needs_upscale], hook)
    SegmentTranscoder(settings).transcode(
        data, renditions, cropping_hook(shared) if ai else None, expected_frames=frames
    )
    return time.process_time() - cpu0, spent[0]


# --- runs --------------------------------------------------------------------------------


def segments(clip: bytes, seconds: float) -> list[tuple[bytes, int]]:
    return [
        (s.data, s.frames)
        for s in Segmenter(io.BytesIO(clip), format="flv", target_duration=seconds)
    ]


def jobs(renditions: Sequence[Rendition]) -> list[tuple[Rendition, ...]]:
    """A segment's jobs on the pool: the ladder, then each 20K tile alone
    (`actors.tile_jobs`: tile x segment is the unit of work)."""
    ladder = tuple(r for r in renditions if getattr(r, "tile", None) is None)
    return [ladder] + [(r,) for r in renditions if getattr(r, "tile", None) is not None]


def run_pool(
    cut: list[tuple[bytes, int]], renditions: Sequence[Rendition], workers: int, preset: str
) -> Run:
    # Spawned, not forked: this process has run torch (its thread pools do not survive
    # a fork; a forked worker can hang on their locks).
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=spawn, initializer=_init, initargs=(preset,)
    ) as pool:
        # Warm each process (imports, model load) outside the timed part.
        list(pool.map(_warm, [renditions] * workers))
        started = time.perf_counter()
        futures = [
            pool.submit(transcode, data, n, job) for data, n in cut for job in jobs(renditions)
        ]
        costs = [f.result() for f in futures]
    wall = time.perf_counter() - started
    frames = sum(n for _, n in cut)
    return Run(
        f"pipeline x{workers}", frames, wall, sum(c for c, _ in costs), sum(e for _, e in costs)
    )


def _warm(renditions: Sequence[Rendition]) -> None:
    if any(r.needs_upscale for r in renditions):
        _enhancer()


def run_single(clip: bytes, renditions: Sequence[Rendition], preset: str) -> Run:
    """The whole source as one segment, in this process."""
    _init(preset)
    _warm(renditions)
    [(data, n)] = segments(clip, seconds=1e9)
    started = time.perf_counter()
    costs = [transcode(data, n, job) for job in jobs(renditions)]
    wall = time.perf_counter() - started
    return Run("single", n, wall, sum(c for c, _ in costs), sum(e for _, e in costs))


def run_passes(clip: bytes, tier: str, shared: bool) -> Run:
    """The enhancer alone on a tier's AI ladder from the 1080p source, in this process:
    each upscaled rung made by its own `enhance` call (``rung by rung``: before
    `enhance_many`), or all together (``shared``: each x2 pass once per frame)."""
    from models.enhance import EnhanceConfig

    _init("veryfast")
    rungs = [r for r in plan(*SOURCE, tier, True).renditions if r.needs_upscale and not r.tile]
    configs = [EnhanceConfig(target_size=(r.width, r.height)) for r in rungs]
    [(data, n)] = segments(clip, seconds=1e9)
    batch = hook_batch(rungs)
    with av.open(io.BytesIO(data), format="mpegts") as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    enhancer = _enhancer()
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, n, batch):
        if shared:
            enhancer.enhance_many(frames[i : i + batch], configs)
        else:
            for config in configs:
                enhancer.enhance(frames[i : i + batch], config)
    wall, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    mode = "shared" if shared else "rung by rung"
    return Run(mode, n, wall, cpu_s, cpu_s)


def passes_report(clip: bytes, tier: str) -> list[str]:
    """Frames per CPU-second of a tier's AI rungs, rung by rung against shared passes."""
    label = "/".join(
        r.name for r in plan(*SOURCE, tier, True).renditions if r.needs_upscale and not r.tile
    )
    before = run_passes(clip, tier, shared=False)
    after = run_passes(clip, tier, shared=True)
    lines = [f"{tier} AI rungs {label} from {SOURCE[0]}x{SOURCE[1]}, enhancer only:"]
    for run in (before, after):
        lines.append(
            f"  {run.mode:<13}{run.frames:>3} frames {run.cpu_s:>8.1f} CPU-s"
            f" {run.fps_per_core:>8.3f} frames/CPU-s"
        )
    lines.append(f"  shared / rung by rung: {after.fps_per_core / before.fps_per_core:.2f}x")
    return lines


# --- report --------------------------------------------------------------------------------


def row(tier: str, ladder: str, run: Run, single: Run | None) -> str:
    ratio = run.fps / REALTIME_FPS
    cores = REALTIME_FPS / run.fps_per_core
    versus = f"{run.cpu_s / single.cpu_s:.2f}" if single else "-"
    enhance = run.enhance_fps_per_core
    return (
        f"{tier:<6}{ladder:<48}{run.mode:<13}{run.frames:>6}{run.wall_s:>9.1f}{run.fps:>9.2f}"
        f"{run.fps_per_core:>10.2f}{ratio:>12.3f}{cores:>10.1f}{versus:>12}"
        f"{(f'{enhance:.2f}' if enhance else '-'):>12}"
    )


def _ladder_label(renditions: Sequence[Rendition]) -> str:
    ladder = [r for r in renditions if getattr(r, "tile", None) is None]
    tiles = [r for r in renditions if getattr(r, "tile", None) is not None]
    label = "/".join(r.name + ("*" if r.needs_upscale else "") for r in ladder)
    if tiles:
        label += f"+{len(tiles)} tiles {tiles[0].width}x{tiles[0].height}*"
    return label


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.tiers", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1080p and 4K, 2 frames")
    ap.add_argument("--frames", type=int, default=8, help="source frames (1080p)")
    ap.add_argument("--frames-20k", type=int, default=2, help="source frames for 20K")
    ap.add_argument("--fps", type=int, default=4, help="source frame rate (segments are 1 s)")
    ap.add_argument("--tiers", nargs="+", choices=TIERS, default=list(TIERS))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--preset", default="veryfast", help="x264 preset")
    ap.add_argument(
        "--passes",
        choices=("4K", "8K", ""),
        default="8K",
        help="the enhancer alone on this tier's AI rungs, rung by rung against shared"
        " x2 passes ('' to skip); --frames-20k frames",
    )
    ap.add_argument("--json", type=Path, default=RESULTS, help="where the rates go")
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.fps, args.frames_20k = 2, 1, 1
        args.tiers = [t for t in args.tiers if t in ("1080p", "4K")]

    clips = {
        n: synthetic(frames=n, gop=args.fps, size=SOURCE, fps=args.fps)
        for n in {args.frames, args.frames_20k}
    }
    print(
        f"source {SOURCE[0]}x{SOURCE[1]} at {args.fps} fps, 1 s segments ({args.frames} frames;"
        f" {args.frames_20k} for 20K); x264 {args.preset}, one thread per process; "
        f"{os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    header = (
        f"{'tier':<6}{'ladder':<48}{'mode':<13}{'frames':>6}{'wall s':>9}{'fps':>9}"
        f"{'fps/core':>10}{'x of 30fps':>12}{'cores@30':>10}{'cpu/single':>12}{'sr fps/core':>12}"
    )
    print(header)
    print("-" * len(header))
    rates: dict[str, Any] = json.loads(args.json.read_text()) if args.json.exists() else {}
    summary = []
    for tier in args.tiers:
        renditions = plan(*SOURCE, tier, tier != "1080p", fps=args.fps).renditions
        clip = clips[args.frames_20k if tier == "20K" else args.frames]
        cut = segments(clip, seconds=1.0)
        ladder = _ladder_label(renditions)
        single = run_single(clip, renditions, args.preset)
        print(row(tier, ladder, single, None), flush=True)
        best = single
        for n in args.workers:
            run = run_pool(cut, renditions, n, args.preset)
            print(row(tier, ladder, run, single), flush=True)
            best = run if run.fps_per_core > best.fps_per_core else best
        enhance = best.enhance_fps_per_core
        rates[tier] = {
            "encode_fps_per_core": round(best.encode_fps_per_core, 3),
            "enhance_fps_per_core": round(enhance, 3) if enhance else None,
            "enhance_fps_per_gpu": None,
            "measured_on": f"{platform.node()} ({os.cpu_count()} CPUs, "
            f"{platform.processor() or platform.machine()}), x264 {args.preset}",
            "date": datetime.now(UTC).date().isoformat(),
        }
        cores = REALTIME_FPS / best.fps_per_core
        summary.append(
            f"{tier}: {best.fps_per_core:.2f} source frames per CPU-second -> real time at "
            f"{REALTIME_FPS} fps needs {cores:.0f} cores"
            + (
                f" (encode alone {REALTIME_FPS / best.encode_fps_per_core:.0f}, AI upscale "
                f"{REALTIME_FPS / enhance:.0f}); not real time on this machine"
                if enhance
                else ("" if cores <= (os.cpu_count() or 1) else "; not real time on this machine")
            )
        )
    print("\n(* = made by AI super-resolution; cpu/single = CPU against the single-process run)")
    for line in summary:
        print(line)
    for tier in (t for t in TIERS if t not in args.tiers):
        print(f"{tier}: not measured in this run (--tiers {tier}; --quick runs 1080p and 4K)")
    if args.passes:
        print()
        for line in passes_report(clips[args.frames_20k], args.passes):
            print(line, flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rates, indent=2) + "\n")
    print(f"rates written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
