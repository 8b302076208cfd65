"""What a quality tier is encoded to: the ladder (`media.ladder`), and for a tier too
large for any codec level (20K) the tiles beside it, all capped by `media_max_height`.

Invariants:
- 20K is a set of tiles beside the 8K-capped ladder (`tile_set`; geometry in
  `media.tiles`), made only when it can be: at or below the source's size, or with AI
  enhancement on (the tiles are then upscaled, and say so).
- Tiles are cut no larger than `MAX_TILE`, H.264's MaxFS at levels 5.1/5.2, and each is
  checked against the H.264 levels up front: a tile that fits none is an error, not a
  stream that fails later.
- The stream's bitrate is shared among the tiles by area.
- A plan capped by `media_max_height` keeps at least the ladder's lowest rung and no
  tiles, and its reason says so.
"""

from __future__ import annotations

from .ladder import (
    MIN_VIDEO_KBPS,
    Ladder,
    Rates,
    build_ladder,
    check_inputs,
    fit,
    upscale_passes,
)
from .levels import h264_excess
from .rendition import Rendition
from .tiles import TileGrid, tile_name

__all__ = ["MAX_TILE", "TIER_FRAME", "plan", "tile_set"]

# The 20K frame and the largest tile it is cut into: 4096x2304 is exactly H.264's
# MaxFS at levels 5.1/5.2 (36,864 macroblocks; level 5.2 at 30 fps, 6 at 60), so a
# 16:9 20K frame is 5x5 tiles.
TIER_FRAME = {"20K": (20480, 11520)}
MAX_TILE = (4096, 2304)


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
    check_inputs(source_w, source_h, quality_tier, fps)
    if quality_tier not in TIER_FRAME:
        return ()
    frame_w, frame_h = fit(source_w, source_h, *TIER_FRAME[quality_tier])
    upscale = frame_w > source_w or frame_h > source_h
    if upscale and not ai_enhance:
        return ()
    rates = Rates.of(quality_tier, bitrate_kbps)
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
