"""How much memory a media worker needs for a stream's ladder, and the rungs that do not fit.

The estimate is what `MediaWorker` declares to Ray (`memory=`; the enhancer actor's is
`actors.enhancer_pool.enhancer_memory_bytes`), so
the scheduler and the autoscaler see it, and what a stream's ladder is checked against
before its first segment is encoded: a rung whose estimate does not fit the worker's
budget is refused up front (logged, recorded with the ladder) instead of being found by
Ray's OOM killer, which kills whatever is largest on the node (the ingest actor and the
Serve controller among them, once).

Invariants:
- Plain arithmetic, no Ray, no torch: the ingest calls it for every new stream.
- The estimate is an upper bound of a worker's peak RSS for one job at a time, or, with
  the lane (`media_lowest_lane`, `actors.segment_pool`), an upper job and a lowest-rung
  job at once (two threads of one process): the process and moderation once, plus the
  larger of the whole job and the upper job with the lowest job beside it (a 20K tile
  job is an upper job too). Derived term by term (`job_bytes`) from peaks measured on
  this project's CPU box (docs/media.md, "Memory"); the system test
  `tests/system/test_media_memory.py` holds a 1080p -> 4K AI stream under it.
- The lowest job counted beside an upper job is the same stream's; the pool is shared
  by the ingest's streams, so one from a larger source (its decode) may need more.
- Refusal drops rungs from the top of the ladder only, never the last rung: a stream
  always gets something.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lumalive.settings import Settings
from media.ladder import Rendition, build_ladder
from media.rendition import lowest_rung
from models.footprint import (
    MAX_PIXELS_CPU,
    enhance_working_set_bytes,
)

__all__ = [
    "HOOK_PIXELS",
    "Refusal",
    "fit_ladder",
    "fit_to_budget",
    "hook_batch",
    "hook_runs",
    "job_bytes",
    "lane_jobs",
    "lowest_job_bytes",
    "media_memory_bytes",
    "within_memory",
    "worker_memory_bytes",
]

log = logging.getLogger(__name__)

MiB = 1 << 20

# An idle worker process: Python, PyAV/FFmpeg, numpy, torch imported (measured RSS of a
# worker that has run one segment: ~420 MB with torch, ~150 MB without).
PROCESS_BYTES = 450 * MiB
# onnxruntime and the 12 MB NudeNet detector, with its 320x320 batches.
MODERATION_BYTES = 120 * MiB
# x264 (veryfast, one thread) holds about 46 frames of yuv420p in lookahead, references
# and their low-resolution copies: measured 169 MB at 1080p, 589 MB at 4K, 2.26 GB at
# 8K. x265 holds more (CTU analysis buffers); counted as 1.5x.
X264_FRAMES = 48
X265_FACTOR = 1.5
# The decoder's reference frames and threads' frames, yuv420p at the source size.
DECODE_FRAMES = 20
# The segment's bytes as received, demuxed and encoded (all renditions), as a factor of
# the largest rendition's segment: bytes are small next to frames, but not nothing at 8K.
SEGMENT_COPIES = 4
# Output pixels per frame-hook call: the frames an upscaled rendition gets from the
# enhancer at once (two 4K frames, one 8K frame); bounds the RGB batches in and out.
HOOK_PIXELS = 2 * 3840 * 2160


@dataclass(frozen=True, slots=True)
class Refusal:
    """A rung left out of a stream's ladder because its worker would not fit `budget`."""

    name: str
    width: int
    height: int
    needs_bytes: int
    budget_bytes: int

    def event(self, source_sequence: int) -> dict[str, object]:
        """The `quality_degraded` event (action `rendition_refused`) that records it."""
        return {
            "action": "rendition_refused",
            "rendition": self.name,
            "width": self.width,
            "height": self.height,
            "needs_mb": self.needs_bytes // MiB,
            "budget_mb": self.budget_bytes // MiB,
            "source_sequence": source_sequence,
            "reason": self.reason,
        }

    @property
    def reason(self) -> str:
        return (
            f"{self.name} ({self.width}x{self.height}) refused: a worker would need about "
            f"{self.needs_bytes / (1 << 30):.1f} GiB, over its {self.budget_bytes / (1 << 30):.1f}"
            " GiB (media_worker_memory_mb)"
        )


def hook_batch(renditions: Sequence[Rendition], limit: int = 8) -> int:
    """Frames per frame-hook call for a ladder: as many as `HOOK_PIXELS` of its largest
    rendition allow, at least one, at most `limit` (the transcoder's `hook_batch`)."""
    largest = max((r.width * r.height for r in renditions), default=1)
    return max(1, min(limit, HOOK_PIXELS // largest))


def _area(r: Rendition) -> int:
    return r.width * r.height


def _decode_bytes(source: tuple[int, int]) -> int:
    """The decoder's `DECODE_FRAMES` yuv420p frames at the source size."""
    return int(DECODE_FRAMES * source[0] * source[1] * 1.5)


def _encoder_bytes(r: Rendition) -> int:
    """A rendition's encoder (`X264_FRAMES` yuv420p frames, x1.5 for HEVC) and its
    reformatter's output frame."""
    factor = X265_FACTOR if r.codec == "hevc" else 1.0
    return int((X264_FRAMES * factor + 1) * _area(r) * 1.5)


def _hook_bytes(
    renditions: Sequence[Rendition], source: tuple[int, int], enhancer_in_process: bool
) -> int:
    """The frame hook's RGB batches in and out, and the enhancer's working set when it
    runs in the worker (one per concurrent call: each job's hook calls it)."""
    hooked = [r for r in renditions if r.needs_upscale] or list(renditions)
    big = max(hooked, key=_area)
    batch = hook_batch(renditions)
    # Out: every hooked rung's frames at once (made together, sharing their x2
    # passes: media.shared_passes), and the frames made from the largest.
    out_px = sum(_area(r) for r in hooked) + _area(big)
    total = batch * source[0] * source[1] * 3 + batch * out_px * 3
    if enhancer_in_process:
        # One call gets at most a batch: fewer frames than its default chunk when small.
        chunk = min(MAX_PIXELS_CPU, batch * _area(big))
        total += enhance_working_set_bytes((big.width, big.height), max_pixels=chunk)
    return total


def _segment_bytes(renditions: Sequence[Rendition]) -> int:
    """`SEGMENT_COPIES` times the largest rendition's 2 s at its peak rate."""
    peak_kbps = max((r.maxrate_kbps + r.audio_kbps for r in renditions), default=0)
    return SEGMENT_COPIES * peak_kbps * 1000 // 8 * 2


def job_bytes(
    renditions: Sequence[Rendition],
    ai: bool,
    *,
    source: tuple[int, int],
    enhancer_in_process: bool = True,
) -> int:
    """One job's own bytes, beside the process and moderation (counted once per worker):
    its decode, its renditions' encoders, the hook's batches and enhancer when `ai`
    (the hook runs for this job), and the segment's copies. Nothing without renditions."""
    if not renditions:
        return 0
    total = _decode_bytes(source) + sum(_encoder_bytes(r) for r in renditions)
    if ai:
        total += _hook_bytes(renditions, source, enhancer_in_process)
    return total + _segment_bytes(renditions)


def lane_jobs(renditions: Sequence[Rendition]) -> tuple[tuple[Rendition, ...], Rendition] | None:
    """The upper job's renditions and the lowest rung, as `actors.lowest_first.split_lowest`
    splits a segment's job; None when it is not split (one rendition, no ordinary rung).
    Not imported from there: it imports the worker, which imports this module."""
    lowest = lowest_rung(renditions)
    if len(renditions) < 2 or lowest is None:
        return None
    return tuple(r for r in renditions if r is not lowest), lowest


def lowest_job_bytes(
    renditions: Sequence[Rendition],
    ai: bool,
    *,
    source: tuple[int, int],
    enhancer_in_process: bool = True,
) -> int:
    """What the lowest-rung job of this ladder adds running in a worker's lane: its
    `job_bytes` (`ai`: the hook runs for the lowest rung: denoise or sharpen, or it is
    upscaled); 0 when the ladder is not split."""
    split = lane_jobs(renditions)
    if split is None:
        return 0
    return job_bytes([split[1]], ai, source=source, enhancer_in_process=enhancer_in_process)


def media_memory_bytes(
    renditions: Sequence[Rendition],
    ai: bool,
    *,
    source: tuple[int, int],
    enhancer_in_process: bool = True,
    moderation: bool = True,
    lane: bool = False,
    lowest_ai: bool | None = None,
) -> int:
    """Upper bound of one media worker's peak RSS while it runs one segment of this
    ladder from a `source` (width, height) frame size, as one job or, with `lane`, as
    an upper-rung job with the lowest rung's job beside it.

    The process (`PROCESS_BYTES`) and moderation (`MODERATION_BYTES`, loaded once; only
    one job moderates), plus the larger of the whole job and, with `lane` and a ladder
    that is split, the upper job and the lowest job together (`job_bytes` each; the
    hook counts for the lowest job if `lowest_ai`, None: as `ai`, since denoise and
    sharpen hook every rung). A job's terms (yuv420p = 1.5 bytes/pixel, RGB = 3):
    - decoding: `DECODE_FRAMES` yuv420p frames at the source size;
    - per rendition: its encoder, `X264_FRAMES` yuv420p frames at its size (x1.5 for
      HEVC), and its reformatter's output frame;
    - with `ai` (the frame hook runs: super-resolution of rungs above the source,
      denoise, sharpen): a batch of `hook_batch` source RGB frames, the same number of
      RGB frames out for every hooked rendition (made together: `media.shared_passes`),
      and the largest's once more (the frames made from its array); plus, when the
      enhancer runs in the worker (no enhancer pool),
      `models.footprint.enhance_working_set_bytes` for the largest hooked rendition
      (the enhancer's defaults on CPU: tiles, one 4K frame at a time, at most the
      hook's batch);
    - the segment's bytes, `SEGMENT_COPIES` times the largest rendition's 2 s at its
      peak rate.
    """
    jobs = job_bytes(renditions, ai, source=source, enhancer_in_process=enhancer_in_process)
    split = lane_jobs(renditions) if lane else None
    if split is not None:
        upper = job_bytes(split[0], ai, source=source, enhancer_in_process=enhancer_in_process)
        beside = lowest_job_bytes(
            renditions,
            ai if lowest_ai is None else lowest_ai,
            source=source,
            enhancer_in_process=enhancer_in_process,
        )
        jobs = max(jobs, upper + beside)
    return PROCESS_BYTES + (MODERATION_BYTES if moderation else 0) + jobs


def fit_ladder(
    renditions: Sequence[Rendition],
    ai: bool,
    *,
    source: tuple[int, int],
    budget_bytes: int,
    enhancer_in_process: bool = True,
    moderation: bool = True,
    lane: bool = False,
    lowest_ai: bool | None = None,
) -> tuple[tuple[Rendition, ...], tuple[Refusal, ...]]:
    """The ladder without the top rungs whose worker would exceed `budget_bytes`, and
    those refused (highest first). The last rung is always kept."""
    kept = list(renditions)
    refused: list[Refusal] = []
    while len(kept) > 1:
        needs = media_memory_bytes(
            kept,
            ai,
            source=source,
            enhancer_in_process=enhancer_in_process,
            moderation=moderation,
            lane=lane,
            lowest_ai=lowest_ai,
        )
        if needs <= budget_bytes:
            break
        top = kept.pop(0)
        refused.append(Refusal(top.name, top.width, top.height, needs, budget_bytes))
    return tuple(kept), tuple(refused)


def _is_tile(r: Rendition) -> bool:
    return getattr(r, "tile", None) is not None


def fit_to_budget(
    renditions: Sequence[Rendition],
    ai: bool,
    *,
    source: tuple[int, int],
    budget_bytes: int,
    enhancer_in_process: bool = True,
    moderation: bool = True,
    lane: bool = False,
    lowest_ai: bool | None = None,
) -> tuple[tuple[Rendition, ...], tuple[Refusal, ...]]:
    """`fit_ladder` for a stream's whole plan: the ladder is one job per segment and is
    fitted rung by rung; 20K tiles are jobs of their own (`actors.tile_jobs`), each
    estimated alone (with `lane`, beside the ladder's lowest-rung job: a tile job is an
    upper job), and refused together (one `Refusal` named for the set) if the largest
    does not fit."""
    ladder = [r for r in renditions if not _is_tile(r)]
    tiles = [r for r in renditions if _is_tile(r)]
    kept, refused = fit_ladder(
        ladder,
        ai,
        source=source,
        budget_bytes=budget_bytes,
        enhancer_in_process=enhancer_in_process,
        moderation=moderation,
        lane=lane,
        lowest_ai=lowest_ai,
    )
    if tiles:
        big = max(tiles, key=_area)
        needs = media_memory_bytes(
            [big], ai, source=source, enhancer_in_process=enhancer_in_process, moderation=moderation
        )
        if lane:
            needs += lowest_job_bytes(
                [*kept, *tiles],
                ai if lowest_ai is None else lowest_ai,
                source=source,
                enhancer_in_process=enhancer_in_process,
            )
        if needs > budget_bytes:
            grid = f"{len(tiles)} tiles"
            refused += (Refusal(grid, big.width, big.height, needs, budget_bytes),)
            tiles = []
    return kept + tuple(tiles), refused


def worker_memory_bytes(settings: Settings, *, in_process: bool = True) -> int:
    """What one media worker declares to Ray and the budget of a stream's ladder:
    `media_worker_memory_mb`, or the estimate for the largest ladder these settings
    allow (an 8K tier with AI from a 1080p source, moderation on, under
    `media_max_height`; with `media_lowest_lane`, its lowest rung's job beside the rest,
    hooked as denoise would hook it)."""
    if settings.media_worker_memory_mb is not None:
        return settings.media_worker_memory_mb * MiB
    ladder = build_ladder(1920, 1080, "8K", True).renditions
    cap = settings.media_max_height
    if cap:
        ladder = tuple(r for r in ladder if min(r.width, r.height) <= cap) or ladder[-1:]
    return media_memory_bytes(
        ladder,
        True,
        source=(1920, 1080),
        enhancer_in_process=in_process,
        moderation=settings.moderation_fps > 0,
        lane=settings.media_lowest_lane,
    )


def hook_runs(renditions: Sequence[Rendition], ai_features: Mapping[str, Any]) -> bool:
    """Whether the worker's frame hook (the enhancer) runs for a stream: denoise or
    sharpen on, or AI enhancement with a rung above the source."""
    if ai_features.get("denoise") or ai_features.get("sharpen"):
        return True
    return bool(ai_features.get("enhancement")) and any(r.needs_upscale for r in renditions)


def within_memory(
    stream: Mapping[str, Any],
    settings: Settings,
    renditions: Sequence[Rendition],
    reason: str | None,
    source: tuple[int, int],
    *,
    log_refusals: bool = True,
) -> tuple[tuple[Rendition, ...], str | None, tuple[Refusal, ...]]:
    """A stream's planned renditions without those a worker's memory budget cannot
    hold (`fit_to_budget` against `worker_memory_bytes`, with the lowest-rung lane when
    `media_lowest_lane`: the hook runs in the lowest rung's job only for denoise,
    sharpen or an upscaled lowest rung), the ladder reason with the
    refusals added, and the refusals (each logged unless `log_refusals` is off: a plan
    shown in an API answer; the caller records the events)."""
    in_process = not settings.media_enhancers
    features = stream.get("ai_features") or {}
    lowest = lowest_rung(renditions)
    kept, refused = fit_to_budget(
        renditions,
        hook_runs(renditions, features),
        source=source,
        budget_bytes=worker_memory_bytes(settings, in_process=in_process),
        enhancer_in_process=in_process,
        moderation=settings.moderation_fps > 0,
        lane=settings.media_lowest_lane,
        lowest_ai=lowest is not None and hook_runs([lowest], features),
    )
    for r in refused if log_refusals else ():
        log.warning("stream %s: %s", stream.get("id"), r.reason)
    if refused:
        reason = "; ".join([*filter(None, [reason]), *(r.reason for r in refused)])
    return kept, reason, refused
