"""Codec level tables: the smallest level that admits a size, frame rate and peak bitrate,
and, when none does, which limit of the highest level is exceeded.

Invariants:
- Every column of each table grows (or stays) from one level to the next, so a
  rendition fits some level exactly when it fits the highest one; `*_excess` checks
  the highest level only and agrees with `*_level` raising.
- Pure Python: the ladder imports this without loading FFmpeg.
"""

from __future__ import annotations

import math

__all__ = [
    "av1_excess",
    "av1_level",
    "h264_excess",
    "h264_level",
    "hevc_excess",
    "hevc_level",
]

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
_H264_HIGH_BR = 1.25  # High profile's MaxBR factor (Table A-2, cpbBrVclFactor 1250)

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

# AV1 Annex A.3: level, MaxPicSize, MaxHSize, MaxVSize, MaxDisplayRate, MainMbps and
# HighMbps as kbit/s (Main profile's BitrateProfileFactor is 1; 0 = no High tier).
_AV1_LEVELS: tuple[tuple[str, int, int, int, int, int, int], ...] = (
    ("2.0", 147_456, 2_048, 1_152, 4_423_680, 1_500, 0),
    ("2.1", 278_784, 2_816, 1_584, 8_363_520, 3_000, 0),
    ("3.0", 665_856, 4_352, 2_448, 19_975_680, 6_000, 0),
    ("3.1", 1_065_024, 5_504, 3_096, 31_950_720, 10_000, 0),
    ("4.0", 2_359_296, 6_144, 3_456, 70_778_880, 12_000, 30_000),
    ("4.1", 2_359_296, 6_144, 3_456, 141_557_760, 20_000, 50_000),
    ("5.0", 8_912_896, 8_192, 4_352, 267_386_880, 30_000, 100_000),
    ("5.1", 8_912_896, 8_192, 4_352, 534_773_760, 40_000, 160_000),
    ("5.2", 8_912_896, 8_192, 4_352, 1_069_547_520, 60_000, 240_000),
    ("5.3", 8_912_896, 8_192, 4_352, 1_069_547_520, 60_000, 240_000),
    ("6.0", 35_651_584, 16_384, 8_704, 1_069_547_520, 60_000, 240_000),
    ("6.1", 35_651_584, 16_384, 8_704, 2_139_095_040, 100_000, 480_000),
    ("6.2", 35_651_584, 16_384, 8_704, 4_278_190_080, 160_000, 800_000),
    ("6.3", 35_651_584, 16_384, 8_704, 4_278_190_080, 160_000, 800_000),
)


def _case(width: int, height: int, fps: float, maxrate_kbps: int) -> str:
    return f"{width}x{height}@{fps:g} at {maxrate_kbps} kbit/s"


# --- H.264 -----------------------------------------------------------------------------


def h264_level(width: int, height: int, fps: float, maxrate_kbps: int) -> str:
    """Lowest H.264 level (High profile) for the size, rate and peak bitrate."""
    mb_w, mb_h = math.ceil(width / 16), math.ceil(height / 16)
    for level, max_mbps, max_fs, max_br in _H264_LEVELS:
        if _h264_excess(mb_w, mb_h, fps, maxrate_kbps, max_mbps, max_fs, max_br) is None:
            return level
    raise ValueError(f"{_case(width, height, fps, maxrate_kbps)} exceeds every H.264 level")


def h264_excess(width: int, height: int, fps: float, maxrate_kbps: int) -> str | None:
    """Which limit of H.264's highest level the rendition exceeds, or None if it fits."""
    level, max_mbps, max_fs, max_br = _H264_LEVELS[-1]
    mb_w, mb_h = math.ceil(width / 16), math.ceil(height / 16)
    excess = _h264_excess(mb_w, mb_h, fps, maxrate_kbps, max_mbps, max_fs, max_br)
    return None if excess is None else f"{excess} (H.264 level {level})"


def _h264_excess(
    mb_w: int, mb_h: int, fps: float, kbps: int, max_mbps: int, max_fs: int, max_br: int
) -> str | None:
    side = math.sqrt(8 * max_fs)  # A.3.1: neither side above sqrt(8 * MaxFS) macroblocks
    if mb_w * mb_h > max_fs:
        return f"frame size {mb_w * mb_h:,} macroblocks > MaxFS {max_fs:,}"
    if max(mb_w, mb_h) > side:
        return f"frame side {max(mb_w, mb_h)} macroblocks > sqrt(8 * MaxFS) = {side:.0f}"
    if mb_w * mb_h * fps > max_mbps:
        return f"{mb_w * mb_h * fps:,.0f} macroblocks/s > MaxMBPS {max_mbps:,}"
    if kbps > max_br * _H264_HIGH_BR:
        return f"peak {kbps:,} kbit/s > High profile MaxBR {max_br * _H264_HIGH_BR:,.0f}"
    return None


# --- HEVC ------------------------------------------------------------------------------


def hevc_level(width: int, height: int, fps: float, maxrate_kbps: int) -> tuple[str, bool]:
    """Lowest HEVC level (Main profile) and whether it needs the High tier."""
    for level, max_ps, max_sr, br_main, br_high in _HEVC_LEVELS:
        if _picture_excess(width, height, fps, max_ps, max_sr) is not None:
            continue
        if maxrate_kbps <= br_main:
            return level, False
        if maxrate_kbps <= br_high:
            return level, True
    raise ValueError(f"{_case(width, height, fps, maxrate_kbps)} exceeds every HEVC level")


def hevc_excess(width: int, height: int, fps: float, maxrate_kbps: int) -> str | None:
    """Which limit of HEVC's highest level the rendition exceeds, or None if it fits."""
    level, max_ps, max_sr, _, br_high = _HEVC_LEVELS[-1]
    excess = _picture_excess(width, height, fps, max_ps, max_sr)
    if excess is None and maxrate_kbps > br_high:
        excess = f"peak {maxrate_kbps:,} kbit/s > High tier MaxBR {br_high:,}"
    return None if excess is None else f"{excess} (HEVC level {level})"


def _picture_excess(width: int, height: int, fps: float, max_ps: int, max_sr: int) -> str | None:
    """HEVC A.4.1: luma picture size, each side at most sqrt(8 * MaxLumaPs), sample rate."""
    side = math.sqrt(8 * max_ps)
    if width * height > max_ps:
        return f"picture size {width * height:,} luma samples > MaxLumaPs {max_ps:,}"
    if max(width, height) > side:
        return f"picture side {max(width, height)} > sqrt(8 * MaxLumaPs) = {side:.0f}"
    if width * height * fps > max_sr:
        return f"{width * height * fps:,.0f} luma samples/s > MaxLumaSr {max_sr:,}"
    return None


# --- AV1 -------------------------------------------------------------------------------


def av1_level(width: int, height: int, fps: float, maxrate_kbps: int) -> tuple[str, bool]:
    """Lowest AV1 level (Main profile) and whether it needs the High tier."""
    for level, max_ps, max_w, max_h, max_rate, br_main, br_high in _AV1_LEVELS:
        if _av1_picture_excess(width, height, fps, max_ps, max_w, max_h, max_rate) is not None:
            continue
        if maxrate_kbps <= br_main:
            return level, False
        if maxrate_kbps <= br_high:
            return level, True
    raise ValueError(f"{_case(width, height, fps, maxrate_kbps)} exceeds every AV1 level")


def av1_excess(width: int, height: int, fps: float, maxrate_kbps: int) -> str | None:
    """Which limit of AV1's highest level the rendition exceeds, or None if it fits."""
    level, max_ps, max_w, max_h, max_rate, _, br_high = _AV1_LEVELS[-1]
    excess = _av1_picture_excess(width, height, fps, max_ps, max_w, max_h, max_rate)
    if excess is None and maxrate_kbps > br_high:
        excess = f"peak {maxrate_kbps:,} kbit/s > HighMbps {br_high // 1000}"
    return None if excess is None else f"{excess} (AV1 level {level})"


def _av1_picture_excess(
    width: int, height: int, fps: float, max_ps: int, max_w: int, max_h: int, max_rate: int
) -> str | None:
    if width * height > max_ps:
        return f"picture size {width * height:,} > MaxPicSize {max_ps:,}"
    if width > max_w or height > max_h:
        return f"{width}x{height} > MaxHSize x MaxVSize {max_w}x{max_h}"
    if width * height * fps > max_rate:
        return f"{width * height * fps:,.0f} samples/s > MaxDisplayRate {max_rate:,}"
    return None
