"""The bitrate ladder: which renditions a stream is transcoded to, and their codec parameters.

Invariants:
- The top rung is the stream's quality tier; a 20K tier is capped at 8K because no
  H.264 or HEVC level admits a frame larger than 8K (H.264 level 6.2: 139,264
  macroblocks; HEVC level 6.2: 35,651,584 luma samples; 20K is 236 M samples).
- Rungs above the source exist only with AI enhancement, and say so (`needs_upscale`).
- A rendition keeps the source's aspect ratio: it is the largest size that fits in
  its rung's box (turned to the source's orientation), with even width and height.
- A rendition knows its own frame rate, level and RFC 6381 codec string, so the
  transcoder (which sets the encoder's level) and the master playlist (which
  advertises it) cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

__all__ = [
    "DEFAULT_RUNGS",
    "QUALITY_BITRATE_KBPS",
    "Codec",
    "Ladder",
    "Rendition",
    "Rung",
    "build_ladder",
    "h264_level",
    "hevc_level",
]

Codec = Literal["h264", "hevc"]

# The spec's quality tiers and their maximum (and default) bitrates, kbit/s.
QUALITY_BITRATE_KBPS = {"1080p": 8_000, "4K": 25_000, "8K": 50_000, "20K": 100_000}

# Peak (VBV max) rate over the average rate. Live ABR encoders commonly cap the peak
# at 110-150 % of the average; the playlist's BANDWIDTH is derived from it.
PEAK_OVER_AVERAGE = 1.2
# MPEG-TS packetisation overhead (PES headers, PAT/PMT, adaptation fields): ~5 %
# for streams in the Mbps range, more for tiny ones, so the declared BANDWIDTH is
# an upper bound rather than an average.
TS_OVERHEAD = 1.08


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


@dataclass(frozen=True, slots=True)
class Rendition:
    """One output variant. `fps` is the source's rate: renditions never change it."""

    name: str
    width: int
    height: int
    video_kbps: int
    audio_kbps: int = 128
    codec: Codec = "h264"
    fps: float = 30.0
    needs_upscale: bool = False

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Rendition:
        """A rendition as stored in `stream_renditions` (sql/0003's column names)."""
        return cls(
            name=row["name"],
            width=row["width"],
            height=row["height"],
            video_kbps=row["video_kbps"],
            audio_kbps=row["audio_kbps"],
            codec=row["video_codec"],
            fps=row["frame_rate"],
            needs_upscale=row["needs_upscale"],
        )

    @property
    def maxrate_kbps(self) -> int:
        """The encoder's VBV peak rate."""
        return int(self.video_kbps * PEAK_OVER_AVERAGE)

    @property
    def bandwidth(self) -> int:
        """HLS BANDWIDTH (peak bits/s of a segment, audio and TS overhead included)."""
        return int((self.maxrate_kbps + self.audio_kbps) * 1000 * TS_OVERHEAD)

    @property
    def average_bandwidth(self) -> int:
        """HLS AVERAGE-BANDWIDTH in bits/s."""
        return int((self.video_kbps + self.audio_kbps) * 1000 * TS_OVERHEAD)

    @property
    def level(self) -> str:
        """The lowest level of the codec that admits this size, rate and bitrate."""
        if self.codec == "hevc":
            return hevc_level(self.width, self.height, self.fps, self.maxrate_kbps)[0]
        return h264_level(self.width, self.height, self.fps, self.maxrate_kbps)

    @property
    def video_codec_string(self) -> str:
        """RFC 6381 string of what the transcoder emits for this rendition.

        H.264: High profile (profile_idc 100, no constraint flags) at `level`.
        HEVC: Main profile as x265 writes it: compatibility flags 1 and 2 ("6"),
        progressive + frame-only constraint flags ("90"), Main or High tier.
        """
        if self.codec == "hevc":
            level, high_tier = hevc_level(self.width, self.height, self.fps, self.maxrate_kbps)
            level_idc = round(float(level) * 30)
            return f"hvc1.1.6.{'H' if high_tier else 'L'}{level_idc}.90"
        level_idc = round(float(self.level) * 10)
        return f"avc1.6400{level_idc:02x}"

    @property
    def codecs(self) -> str:
        """The HLS CODECS attribute: video and AAC-LC audio."""
        return f"{self.video_codec_string},mp4a.40.2"


class Ladder(NamedTuple):
    """`build_ladder`'s answer; unpacks as `(renditions, reason)`."""

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
) -> Ladder:
    """Renditions for a source, highest first, and why the ladder was capped (or None).

    Rungs above the tier are dropped; rungs above the source are dropped unless
    `ai_enhance`, in which case they are kept with `needs_upscale`. A source smaller
    than every rung gets one rendition at its own size, so a ladder is never empty.
    """
    if quality_tier not in _TIER_TOP:
        raise ValueError(f"unknown quality tier {quality_tier!r}; expected {list(_TIER_TOP)}")
    if source_w <= 0 or source_h <= 0:
        raise ValueError(f"source size must be positive, got {source_w}x{source_h}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    table = sorted(rungs or DEFAULT_RUNGS, key=lambda r: r.width * r.height, reverse=True)
    top_name = _TIER_TOP[quality_tier]
    tops = [r for r in table if r.name == top_name]
    if not tops:
        raise ValueError(f"no rung named {top_name!r} for tier {quality_tier!r}")
    top = tops[0]
    reason = _CAP_REASON if quality_tier == "20K" else None
    # The tier's bitrate is a ceiling for every rung (a custom table may exceed it).
    ceiling_kbps = QUALITY_BITRATE_KBPS[top_name]

    renditions: list[Rendition] = []
    seen: set[tuple[int, int]] = set()
    for rung in table:
        if rung.width * rung.height > top.width * top.height:
            continue
        width, height = _fit(source_w, source_h, rung.width, rung.height)
        upscale = width > source_w or height > source_h
        if (upscale and not ai_enhance) or (width, height) in seen:
            continue
        seen.add((width, height))
        renditions.append(
            Rendition(
                name=rung.name,
                width=width,
                height=height,
                video_kbps=min(rung.video_kbps, ceiling_kbps),
                audio_kbps=rung.audio_kbps,
                codec=rung.codec,
                fps=fps,
                needs_upscale=upscale,
            )
        )
    if not renditions:
        smallest = table[-1]
        width, height = _even(source_w), _even(source_h)
        share = (width * height) / (smallest.width * smallest.height)
        renditions.append(
            Rendition(
                name=f"{min(width, height)}p",
                width=width,
                height=height,
                video_kbps=max(200, int(smallest.video_kbps * share)),
                audio_kbps=smallest.audio_kbps,
                codec=smallest.codec,
                fps=fps,
            )
        )
    return Ladder(tuple(renditions), reason)


def _even(n: float) -> int:
    return max(2, int(round(n / 2)) * 2)


def _fit(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """Largest even size with the source's aspect inside the box (portrait boxes for
    portrait sources, so a 1080x1920 phone stream gets a 1080x1920 "1080p")."""
    if (src_h > src_w) != (box_h > box_w):
        box_w, box_h = box_h, box_w
    scale = min(box_w / src_w, box_h / src_h)
    return _even(src_w * scale), _even(src_h * scale)


# --- codec levels ----------------------------------------------------------------------

# H.264 Table A-1: level, MaxMBPS, MaxFS (macroblocks), MaxBR (kbit/s, Baseline/Main;
# High allows 1.25x). Level 1b is left out: nothing we emit is that small.
_H264_LEVELS: tuple[tuple[str, int, int, int], ...] = (
    ("1", 1_485, 99, 64),
    ("1.1", 3_000, 396, 192),
    ("1.2", 6_000, 396, 384),
    ("1.3", 11_880, 396, 768),
    ("2", 11_880, 396, 2_000),
    ("2.1", 19_800, 792, 4_000),
    ("2.2", 20_250, 1_620, 4_000),
    ("3", 40_500, 1_620, 10_000),
    ("3.1", 108_000, 3_600, 14_000),
    ("3.2", 216_000, 5_120, 20_000),
    ("4", 245_760, 8_192, 20_000),
    ("4.1", 245_760, 8_192, 50_000),
    ("4.2", 522_240, 8_704, 50_000),
    ("5", 589_824, 22_080, 135_000),
    ("5.1", 983_040, 36_864, 240_000),
    ("5.2", 2_073_600, 36_864, 240_000),
    ("6", 4_177_920, 139_264, 240_000),
    ("6.1", 8_355_840, 139_264, 480_000),
    ("6.2", 16_711_680, 139_264, 800_000),
)

# HEVC Table A.8/A.9: level, MaxLumaPs, MaxLumaSr, MaxBR Main tier, MaxBR High tier
# (kbit/s, Main profile; 0 = no High tier at that level).
_HEVC_LEVELS: tuple[tuple[str, int, int, int, int], ...] = (
    ("1", 36_864, 552_960, 128, 0),
    ("2", 122_880, 3_686_400, 1_500, 0),
    ("2.1", 245_760, 7_372_800, 3_000, 0),
    ("3", 552_960, 16_588_800, 6_000, 0),
    ("3.1", 983_040, 33_177_600, 10_000, 0),
    ("4", 2_228_224, 66_846_720, 12_000, 30_000),
    ("4.1", 2_228_224, 133_693_440, 20_000, 50_000),
    ("5", 8_912_896, 267_386_880, 25_000, 100_000),
    ("5.1", 8_912_896, 534_773_760, 40_000, 160_000),
    ("5.2", 8_912_896, 1_069_547_520, 60_000, 240_000),
    ("6", 35_651_584, 1_069_547_520, 60_000, 240_000),
    ("6.1", 35_651_584, 2_139_095_040, 120_000, 480_000),
    ("6.2", 35_651_584, 4_278_190_080, 240_000, 800_000),
)


def h264_level(width: int, height: int, fps: float, maxrate_kbps: int) -> str:
    """Lowest H.264 level (High profile) for the size, rate and peak bitrate."""
    mb_w, mb_h = math.ceil(width / 16), math.ceil(height / 16)
    frame_mbs = mb_w * mb_h
    for level, max_mbps, max_fs, max_br in _H264_LEVELS:
        # A.3.1: neither side may exceed sqrt(8 * MaxFS) macroblocks.
        side = math.sqrt(8 * max_fs)
        if (
            frame_mbs <= max_fs
            and mb_w <= side
            and mb_h <= side
            and frame_mbs * fps <= max_mbps
            and maxrate_kbps <= max_br * 1.25
        ):
            return level
    raise ValueError(f"{width}x{height}@{fps:g} at {maxrate_kbps} kbit/s exceeds every H.264 level")


def hevc_level(width: int, height: int, fps: float, maxrate_kbps: int) -> tuple[str, bool]:
    """Lowest HEVC level (Main profile) and whether it needs the High tier."""
    luma = width * height
    for level, max_ps, max_sr, br_main, br_high in _HEVC_LEVELS:
        side = math.sqrt(8 * max_ps)
        if luma > max_ps or width > side or height > side or luma * fps > max_sr:
            continue
        if maxrate_kbps <= br_main:
            return level, False
        if maxrate_kbps <= br_high:
            return level, True
    raise ValueError(f"{width}x{height}@{fps:g} at {maxrate_kbps} kbit/s exceeds every HEVC level")
