"""The bitrate ladder: which rungs a stream is transcoded to, fitted to its source, and
their rates. A rung becomes a `Rendition` (`media.rendition`: codec parameters, HLS
attributes); the 20K tiles beside the ladder, and the whole plan, are `media.tier_plan`'s.

Invariants:
- The top rung is the stream's quality tier at the stream's bitrate (the tier's
  default, or the lower one the broadcaster chose); every rung below keeps its
  documented rate scaled by the same factor (stream bitrate / tier default), so no
  rung exceeds the top's rate.
- A 20K ladder is capped at 8K because no H.264 or HEVC level admits a frame larger
  than 8K (H.264 level 6.2: 139,264 macroblocks; HEVC level 6.2: 35,651,584 luma
  samples; 20K is 236 M samples). 20K itself is a set of tiles beside that ladder
  (`media.tier_plan.tile_set`).
- Rungs above the source exist only with AI enhancement, and say so (`needs_upscale`,
  and `upscale_passes`: the learned x2 passes that make them).
- A rendition keeps the source's aspect ratio: it is the largest size that fits in
  its rung's box (turned to the source's orientation), with even width and height.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .levels import h264_level, hevc_level
from .rendition import Codec, Rendition

__all__ = [
    "DEFAULT_RUNGS",
    "MIN_VIDEO_KBPS",
    "QUALITY_BITRATE_KBPS",
    "Codec",
    "Ladder",
    "Rates",
    "Rendition",
    "Rung",
    "build_ladder",
    "check_inputs",
    "fit",
    "upscale_passes",
    "h264_level",
    "hevc_level",
]

# The spec's quality tiers and their maximum (and default) bitrates, kbit/s.
QUALITY_BITRATE_KBPS = {"1080p": 8_000, "4K": 25_000, "8K": 50_000, "20K": 100_000}


@dataclass(frozen=True, slots=True)
class Rung:
    """A ladder step before it is fitted to a source: a bounding box and its rates."""

    name: str
    width: int
    height: int
    video_kbps: int
    audio_kbps: int = 128
    codec: Codec = "h264"


# The spec's tiers (1080p 8 Mbps, 4K 25 Mbps, 8K 50 Mbps) plus the usual lower rungs.
DEFAULT_RUNGS: tuple[Rung, ...] = (
    Rung("8K", 7680, 4320, 50_000),
    Rung("4K", 3840, 2160, 25_000),
    Rung("1080p", 1920, 1080, 8_000),
    Rung("720p", 1280, 720, 2_800),
    Rung("480p", 854, 480, 1_400),
    Rung("360p", 640, 360, 800),
)

_TIER_TOP = {"1080p": "1080p", "4K": "4K", "8K": "8K", "20K": "8K"}
_CAP_REASON = "20K exceeds every H.264/HEVC level; capped at 8K"

# The learned upscaler's x2 passes at most (models.enhance.EnhanceConfig.max_sr_passes);
# what is left (1080p -> 20K is 10.7x) is bicubic.
MAX_SR_PASSES = 2
MIN_VIDEO_KBPS = 100  # a rung's floor when a low stream bitrate scales the ladder down


class Ladder(NamedTuple):
    """`build_ladder`'s answer (and `tier_plan.plan`'s); unpacks as `(renditions, reason)`."""

    renditions: tuple[Rendition, ...]
    reason: str | None


def build_ladder(
    source_w: int,
    source_h: int,
    quality_tier: str,
    ai_enhance: bool,
    rungs: Sequence[Rung] | None = None,
    *,
    fps: float = 30.0,
    bitrate_kbps: int | None = None,
) -> Ladder:
    """Renditions for a source, highest first, and why the ladder was capped (or None).

    Rungs above the tier are dropped; rungs above the source are dropped unless
    `ai_enhance`, in which case they are kept with `needs_upscale`. A source smaller
    than every rung gets one rendition at its own size, so a ladder is never empty.
    `bitrate_kbps` is the stream's (None: the tier's default): every rung's rate is
    scaled by it over the tier's default, and none exceeds it.
    """
    check_inputs(source_w, source_h, quality_tier, fps)
    table = sorted(rungs or DEFAULT_RUNGS, key=lambda r: r.width * r.height, reverse=True)
    top = _top_rung(table, quality_tier)
    rates = Rates.of(quality_tier, bitrate_kbps)
    below_top = [r for r in table if r.width * r.height <= top.width * top.height]
    renditions = _fitted(below_top, source_w, source_h, ai_enhance, rates, fps)
    if not renditions:
        renditions = [_source_sized(table[-1], source_w, source_h, fps, rates)]
    return Ladder(tuple(renditions), _CAP_REASON if quality_tier == "20K" else None)


def upscale_passes(source_w: int, source_h: int, width: int, height: int) -> int:
    """The learned x2 passes that enlarge a source to a size (at most `MAX_SR_PASSES`;
    beyond them the enhancer enlarges bicubically). 1080p -> 4K: 1; -> 8K: 2."""
    scale = max(width / source_w, height / source_h)
    if scale <= 1:
        return 0
    return min(MAX_SR_PASSES, math.ceil(math.log2(scale) - 1e-9))


class Rates(NamedTuple):
    """The stream's bitrate and the factor it scales the documented rungs by."""

    stream_kbps: int
    factor: float

    @classmethod
    def of(cls, quality_tier: str, bitrate_kbps: int | None) -> Rates:
        tier_kbps = QUALITY_BITRATE_KBPS[quality_tier]
        kbps = tier_kbps if bitrate_kbps is None else bitrate_kbps
        if not 0 < kbps <= tier_kbps:
            raise ValueError(f"bitrate must be 1..{tier_kbps} kbit/s for {quality_tier}: {kbps}")
        return cls(kbps, kbps / tier_kbps)

    def rung(self, documented_kbps: int) -> int:
        """A rung's rate: its documented one scaled, never above the stream's."""
        scaled = round(documented_kbps * self.factor)
        return max(min(MIN_VIDEO_KBPS, self.stream_kbps), min(scaled, self.stream_kbps))


def check_inputs(source_w: int, source_h: int, quality_tier: str, fps: float) -> None:
    """Refuse what no plan can be made for (ValueError): an unknown tier, an empty
    source, no frame rate. Shared with the tile plan (`media.tier_plan`)."""
    if quality_tier not in _TIER_TOP:
        raise ValueError(f"unknown quality tier {quality_tier!r}; expected {list(_TIER_TOP)}")
    if source_w <= 0 or source_h <= 0:
        raise ValueError(f"source size must be positive, got {source_w}x{source_h}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")


def _top_rung(table: Sequence[Rung], quality_tier: str) -> Rung:
    """The largest rung named for the tier's top (a 20K tier tops out at 8K)."""
    top_name = _TIER_TOP[quality_tier]
    for rung in table:
        if rung.name == top_name:
            return rung
    raise ValueError(f"no rung named {top_name!r} for tier {quality_tier!r}")


def _fitted(
    table: Sequence[Rung],
    source_w: int,
    source_h: int,
    ai_enhance: bool,
    rates: Rates,
    fps: float,
) -> list[Rendition]:
    """Each rung fitted to the source's aspect; upscales only with AI, no size twice."""
    renditions: list[Rendition] = []
    seen: set[tuple[int, int]] = set()
    for rung in table:
        width, height = fit(source_w, source_h, rung.width, rung.height)
        upscale = width > source_w or height > source_h
        if (upscale and not ai_enhance) or (width, height) in seen:
            continue
        seen.add((width, height))
        renditions.append(
            Rendition(
                name=rung.name,
                width=width,
                height=height,
                video_kbps=rates.rung(rung.video_kbps),
                audio_kbps=rung.audio_kbps,
                codec=rung.codec,
                fps=fps,
                needs_upscale=upscale,
                upscale_passes=upscale_passes(source_w, source_h, width, height),
            )
        )
    return renditions


def _source_sized(
    smallest: Rung, source_w: int, source_h: int, fps: float, rates: Rates
) -> Rendition:
    """One rendition at the source's own size, its bitrate scaled from the smallest rung."""
    width, height = _even(source_w), _even(source_h)
    share = (width * height) / (smallest.width * smallest.height)
    return Rendition(
        name=f"{min(width, height)}p",
        width=width,
        height=height,
        video_kbps=max(min(200, rates.stream_kbps), rates.rung(int(smallest.video_kbps * share))),
        audio_kbps=smallest.audio_kbps,
        codec=smallest.codec,
        fps=fps,
    )


def _even(n: float) -> int:
    return max(2, int(round(n / 2)) * 2)


def fit(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """Largest even size with the source's aspect inside the box (portrait boxes for
    portrait sources, so a 1080x1920 phone stream gets a 1080x1920 "1080p")."""
    if (src_h > src_w) != (box_h > box_w):
        box_w, box_h = box_h, box_w
    scale = min(box_w / src_w, box_h / src_h)
    return _even(src_w * scale), _even(src_h * scale)
