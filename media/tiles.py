"""Tile geometry: a frame too large for any codec level, cut into a grid of tiles that
each fit one, and the source window each tile is made from. Making a tile from frames,
and the tile map, are `media.tile_renditions`'s; the MPD is `media.dash`'s.

A 20K frame (20480x11520, 236 M luma samples) is far over every H.264/HEVC/AV1 level
(8K-class at most, 35.7 M samples). Cut 5x5 it is 25 tiles of 4096x2304, each an
ordinary rendition: encoded on its own by any pool worker, with the same segment
boundaries and frame count as every other rendition, and put back together by a
player that reads the tile map or the MPD's SRD.

Invariants:
- A grid covers its frame exactly once: column widths sum to the frame width, row
  heights to its height, no overlap, no gap (`TileGrid.tiles`).
- Every tile has even sides (4:2:0 chroma) of at least `MIN_TILE_SIDE` pixels, and
  all tiles but the last column/row share one size, a multiple of 16 where possible.
- A tile's source window reaches `WINDOW_MARGIN` source pixels past the tile on every
  side inside the frame: more than the upscaler's reach, so the window enlarged at the
  frame's scale holds the tile exactly as the whole enlarged frame would.
- Pure Python: the ladder imports this without loading FFmpeg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "MIN_TILE_SIDE",
    "Tile",
    "TileGrid",
    "Window",
    "source_window",
    "tile_name",
]

# Smallest tile side: above HEVC's 64-pixel CTB and any encoder's minimum.
MIN_TILE_SIDE = 128
# Source pixels around a tile's window: covers the reach of two x2 passes of the
# super-resolution network (a few pixels each) and the bicubic kernel (2 pixels).
WINDOW_MARGIN = 8


def tile_name(prefix: str, row: int, col: int) -> str:
    """`20K_r0c4`: a rendition name (and URL part) of at most 20 characters."""
    return f"{prefix}_r{row}c{col}"


@dataclass(frozen=True, slots=True)
class Tile:
    """Where a tile sits in the whole (tiled) frame, in pixels of that frame."""

    row: int
    col: int
    x: int
    y: int
    width: int
    height: int
    frame_width: int  # the whole frame the tiles make up
    frame_height: int

    def srd(self, source_id: int = 0) -> str:
        """The DASH SRD value: source_id,x,y,w,h,total_w,total_h."""
        return (
            f"{source_id},{self.x},{self.y},{self.width},{self.height},"
            f"{self.frame_width},{self.frame_height}"
        )


@dataclass(frozen=True, slots=True)
class TileGrid:
    """A frame cut into `cols` x `rows` tiles; see the module's invariants."""

    frame_width: int
    frame_height: int
    cols: int
    rows: int

    @classmethod
    def for_frame(cls, width: int, height: int, max_tile: tuple[int, int]) -> TileGrid:
        """The fewest tiles no larger than `max_tile` (e.g. 4096x2304: H.264 level 5.1's
        36,864 macroblocks) that cover a `width` x `height` frame."""
        if width % 2 or height % 2 or width < MIN_TILE_SIDE or height < MIN_TILE_SIDE:
            raise ValueError(f"a tiled frame needs even sides >= {MIN_TILE_SIDE}: {width}x{height}")
        if max_tile[0] < MIN_TILE_SIDE or max_tile[1] < MIN_TILE_SIDE:
            raise ValueError(f"tiles must be at least {MIN_TILE_SIDE} pixels a side")
        grid = cls(width, height, math.ceil(width / max_tile[0]), math.ceil(height / max_tile[1]))
        grid.tiles()  # checks the sizes
        return grid

    def tiles(self) -> tuple[Tile, ...]:
        """Row by row, left to right."""
        xs = _cuts(self.frame_width, self.cols)
        ys = _cuts(self.frame_height, self.rows)
        return tuple(
            Tile(r, c, x0, y0, x1 - x0, y1 - y0, self.frame_width, self.frame_height)
            for r, (y0, y1) in enumerate(zip(ys, ys[1:], strict=False))
            for c, (x0, x1) in enumerate(zip(xs, xs[1:], strict=False))
        )


def _cuts(length: int, parts: int) -> list[int]:
    """Edges of `parts` spans over `length`: equal spans (multiples of 16 when that
    leaves a last span big enough, else even), the last taking the remainder."""
    for align in (16, 2):
        step = -(-math.ceil(length / parts) // align) * align
        last = length - step * (parts - 1)
        if MIN_TILE_SIDE <= last <= step:
            return [i * step for i in range(parts)] + [length]
    raise ValueError(f"cannot cut {length} pixels into {parts} tiles of >= {MIN_TILE_SIDE}")


@dataclass(frozen=True, slots=True)
class Window:
    """The source pixels a tile is made from, and where the tile lies in them once
    they are enlarged to `out_width` x `out_height`."""

    x: int  # source window, in source pixels
    y: int
    width: int
    height: int
    out_width: int  # the window at the tiled frame's scale
    out_height: int
    crop_x: int  # the tile's top-left inside the enlarged window
    crop_y: int


def source_window(tile: Tile, source_w: int, source_h: int) -> Window:
    """The source window under a tile, `WINDOW_MARGIN` pixels wider each side (within
    the frame). The window is enlarged by the frame's own scale, so its pixels land
    where the whole frame's would (up to rounding of the window's edge: under half an
    output pixel)."""
    sx, sy = tile.frame_width / source_w, tile.frame_height / source_h
    x0 = max(0, math.floor(tile.x / sx) - WINDOW_MARGIN)
    y0 = max(0, math.floor(tile.y / sy) - WINDOW_MARGIN)
    x1 = min(source_w, math.ceil((tile.x + tile.width) / sx) + WINDOW_MARGIN)
    y1 = min(source_h, math.ceil((tile.y + tile.height) / sy) + WINDOW_MARGIN)
    crop_x, crop_y = round(tile.x - x0 * sx), round(tile.y - y0 * sy)
    # At least the tile's extent from its crop point (rounding must not cut it short).
    out_w = max(round((x1 - x0) * sx), crop_x + tile.width)
    out_h = max(round((y1 - y0) * sy), crop_y + tile.height)
    return Window(x0, y0, x1 - x0, y1 - y0, out_w, out_h, crop_x, crop_y)
