"""The bitrate ladder: which renditions a stream is transcoded to, and their codec parameters.

Invariants:
- The top rung is the stream's quality tier at the stream's bitrate (the tier's
  default, or the lower one the broadcaster chose); every rung below keeps its
  documented rate scaled by the same factor (stream bitrate / tier default), so no
  rung exceeds the top's rate.
- A 20K ladder is capped at 8K because no H.264 or HEVC level admits a frame larger
  than 8K (H.264 level 6.2: 139,264 macroblocks; HEVC level 6.2: 35,651,584 luma
  samples; 20K is 236 M samples). 20K itself is a set of tiles beside that ladder
  (`tile_set`, `media.tiles`), made only when it can be (AI enhancement on).
- Rungs above the source exist only with AI enhancement, and say so (`needs_upscale`,
  and `upscale_passes`: the learned x2 passes that make them).
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

from .levels import h264_excess, h264_level, hevc_level
from .tiles import Tile, TileGrid, tile_name

__all__ = [
    "DEFAULT_RUNGS",
    "QUALITY_BITRATE_KBPS",
    "Codec",
    "Ladder",
    "Rendition",
    "Rung",
    "TIER_FRAME",
    "build_ladder",
    "plan",
    "tile_set",
    "upscale_passes",
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

# The 20K frame and the largest tile it is cut into: 4096x2304 is exactly H.264's
# MaxFS at levels 5.1/5.2 (36,864 macroblocks; level 5.2 at 30 fps, 6 at 60), so a
# 16:9 20K frame is 5x5 tiles.
TIER_FRAME = {"20K": (20480, 11520)}
MAX_TILE = (4096, 2304)
# The learned upscaler's x2 passes at most (models.enhance.EnhanceConfig.max_sr_passes);
# what is left (1080p -> 20K is 10.7x) is bicubic.
MAX_SR_PASSES = 2
MIN_VIDEO_KBPS = 100  # a rung's floor when a low stream bitrate scales the ladder down


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
    upscale_passes: int = 0  # learned x2 passes (0: not upscaled by the network)
    tile: Tile | None = None  # set: one tile of a tiled frame (20K)
    # HLS VIDEO-RANGE: "SDR", or "PQ"/"HLG" for an HDR rendition (HEVC Main10, fMP4;
    # media.hdr). A str, not media.hdr.VideoRange: hdr imports this module.
    video_range: str = "SDR"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Rendition:
        """A rendition as stored in `stream_renditions` (sql/0003's and 0010's columns)."""
        tile = None
        if row.get("tile_row") is not None:
            tile = Tile(
                row["tile_row"],
                row["tile_col"],
                row["tile_x"],
                row["tile_y"],
                row["width"],
                row["height"],
                row["frame_width"],
                row["frame_height"],
            )
        return cls(
            name=row["name"],
            width=row["width"],
            height=row["height"],
            video_kbps=row["video_kbps"],
            audio_kbps=row["audio_kbps"],
            codec=row["video_codec"],
            fps=row["frame_rate"],
            needs_upscale=row["needs_upscale"],
            upscale_passes=row.get("upscale_passes") or 0,
            tile=tile,
            video_range=row.get("video_range") or "SDR",  # sql/0011
        )

    @property
    def maxrate_kbps(self) -> int:
        """The encoder's VBV peak rate."""
        return int(self.video_kbps * PEAK_OVER_AVERAGE)

    @property
    def bandwidth(self) -> int:
        """HLS BANDWIDTH (peak bits/s of a segment, audio and TS overhead included)."""
        return int((self.maxrate_kbps + self._audio_kbps) * 1000 * TS_OVERHEAD)

    @property
    def average_bandwidth(self) -> int:
        """HLS AVERAGE-BANDWIDTH in bits/s."""
        return int((self.video_kbps + self._audio_kbps) * 1000 * TS_OVERHEAD)

    @property
    def has_audio(self) -> bool:
        """Whether its segments carry the stream's audio: every rendition but a tile (the
        ladder beside the tiles carries it once, not 25 times, and the DASH players that
        compose tiles take one track per CMAF file)."""
        return self.tile is None

    @property
    def _audio_kbps(self) -> int:
        return self.audio_kbps if self.has_audio else 0

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
        """The HLS CODECS attribute: video and AAC-LC audio (video alone for a tile)."""
        return f"{self.video_codec_string},mp4a.40.2" if self.has_audio else self.video_codec_string


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
    bitrate_kbps: int | None = None,
) -> Ladder:
    """Renditions for a source, highest first, and why the ladder was capped (or None).

    Rungs above the tier are dropped; rungs above the source are dropped unless
    `ai_enhance`, in which case they are kept with `needs_upscale`. A source smaller
    than every rung gets one rendition at its own size, so a ladder is never empty.
    `bitrate_kbps` is the stream's (None: the tier's default): every rung's rate is
    scaled by it over the tier's default, and none exceeds it.
    """
    _check_inputs(source_w, source_h, quality_tier, fps)
    table = sorted(rungs or DEFAULT_RUNGS, key=lambda r: r.width * r.height, reverse=True)
    top = _top_rung(table, quality_tier)
    rates = _Rates.of(quality_tier, bitrate_kbps)
    below_top = [r for r in table if r.width * r.height <= top.width * top.height]
    renditions = _fitted(below_top, source_w, source_h, ai_enhance, rates, fps)
    if not renditions:
        renditions = [_source_sized(table[-1], source_w, source_h, fps, rates)]
    return Ladder(tuple(renditions), _CAP_REASON if quality_tier == "20K" else None)


def plan(
    source_w: int,
    source_h: int,
    quality_tier: str,
    ai_enhance: bool,
    *,
    fps: float = 30.0,
    bitrate_kbps: int | None = None,
    max_height: int | None = None,
) -> Ladder:
    """Everything a stream is encoded to: its ladder (highest first), then its tiles
    (20K), none above `max_height` (short side), and why it is less than the tier."""
    renditions, reason = build_ladder(
        source_w, source_h, quality_tier, ai_enhance, fps=fps, bitrate_kbps=bitrate_kbps
    )
    tiles = tile_set(
        source_w, source_h, quality_tier, ai_enhance, fps=fps, bitrate_kbps=bitrate_kbps
    )
    notes = [reason]
    if tiles:
        last = tiles[-1].tile
        assert last is not None
        notes.append(
            f"{quality_tier} as {last.col + 1}x{last.row + 1} tiles of"
            f" {tiles[0].width}x{tiles[0].height}"
        )
    elif quality_tier in TIER_FRAME:
        notes.append(f"no {quality_tier} tiles: the source is below it and AI enhancement is off")
    if max_height:
        kept = [r for r in renditions if min(r.width, r.height) <= max_height] or [renditions[-1]]
        if len(kept) < len(renditions) or tiles:
            notes.append(f"capped at {max_height}p (media_max_height)")
        renditions, tiles = tuple(kept), ()
    return Ladder(renditions + tiles, "; ".join(n for n in notes if n) or None)


def tile_set(
    source_w: int,
    source_h: int,
    quality_tier: str,
    ai_enhance: bool,
    *,
    fps: float = 30.0,
    bitrate_kbps: int | None = None,
    max_tile: tuple[int, int] = MAX_TILE,
) -> tuple[Rendition, ...]:
    """The tiles of a tier too large for any codec level (20K), row by row; empty for
    other tiers, and for a source below the tier without AI enhancement (it stops at
    the source size: its ladder). The stream's bitrate is shared by area."""
    _check_inputs(source_w, source_h, quality_tier, fps)
    if quality_tier not in TIER_FRAME:
        return ()
    frame_w, frame_h = _fit(source_w, source_h, *TIER_FRAME[quality_tier])
    upscale = frame_w > source_w or frame_h > source_h
    if upscale and not ai_enhance:
        return ()
    rates = _Rates.of(quality_tier, bitrate_kbps)
    passes = upscale_passes(source_w, source_h, frame_w, frame_h)
    out = []
    for tile in TileGrid.for_frame(frame_w, frame_h, max_tile).tiles():
        share = tile.width * tile.height / (frame_w * frame_h)
        r = Rendition(
            name=tile_name(quality_tier, tile.row, tile.col),
            width=tile.width,
            height=tile.height,
            video_kbps=max(MIN_VIDEO_KBPS, round(rates.stream_kbps * share)),
            fps=fps,
            needs_upscale=upscale,
            upscale_passes=passes,
            tile=tile,
        )
        excess = h264_excess(r.width, r.height, r.fps, r.maxrate_kbps)
        if excess is not None:
            raise ValueError(f"tile {r.name} ({r.width}x{r.height}) fits no level: {excess}")
        out.append(r)
    return tuple(out)


def upscale_passes(source_w: int, source_h: int, width: int, height: int) -> int:
    """The learned x2 passes that enlarge a source to a size (at most `MAX_SR_PASSES`;
    beyond them the enhancer enlarges bicubically). 1080p -> 4K: 1; -> 8K: 2."""
    scale = max(width / source_w, height / source_h)
    if scale <= 1:
        return 0
    return min(MAX_SR_PASSES, math.ceil(math.log2(scale) - 1e-9))


class _Rates(NamedTuple):
    """The stream's bitrate and the factor it scales the documented rungs by."""

    stream_kbps: int
    factor: float

    @classmethod
    def of(cls, quality_tier: str, bitrate_kbps: int | None) -> _Rates:
        tier_kbps = QUALITY_BITRATE_KBPS[quality_tier]
        kbps = tier_kbps if bitrate_kbps is None else bitrate_kbps
        if not 0 < kbps <= tier_kbps:
            raise ValueError(f"bitrate must be 1..{tier_kbps} kbit/s for {quality_tier}: {kbps}")
        return cls(kbps, kbps / tier_kbps)

    def rung(self, documented_kbps: int) -> int:
        """A rung's rate: its documented one scaled, never above the stream's."""
        scaled = round(documented_kbps * self.factor)
        return max(min(MIN_VIDEO_KBPS, self.stream_kbps), min(scaled, self.stream_kbps))


def _check_inputs(source_w: int, source_h: int, quality_tier: str, fps: float) -> None:
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
    rates: _Rates,
    fps: float,
) -> list[Rendition]:
    """Each rung fitted to the source's aspect; upscales only with AI, no size twice."""
    renditions: list[Rendition] = []
    seen: set[tuple[int, int]] = set()
    for rung in table:
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
    smallest: Rung, source_w: int, source_h: int, fps: float, rates: _Rates
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


def _fit(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """Largest even size with the source's aspect inside the box (portrait boxes for
    portrait sources, so a 1080x1920 phone stream gets a 1080x1920 "1080p")."""
    if (src_h > src_w) != (box_h > box_w):
        box_w, box_h = box_h, box_w
    scale = min(box_w / src_w, box_h / src_h)
    return _even(src_w * scale), _even(src_h * scale)
