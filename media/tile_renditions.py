"""Tile renditions (`Rendition.tile` set): making one from source frames, and the JSON
tile map that lists them for HLS players. The geometry is `media.tiles`'s.

Invariants:
- A tile is made from the source frame alone: `cropping_hook` enlarges only the source
  window under the tile (`tiles.source_window`) and cuts the tile out of it at the
  tile's exact place in the whole enlarged frame, so a worker never holds the whole
  20K frame (708 MB as RGB) and tiles of one segment are made independently.
- No torch here: the enlarging is the worker's own frame hook.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from .ladder import Rendition
from .scale import FrameHook
from .tiles import source_window

__all__ = ["cropping_hook", "tile_map"]


def cropping_hook(hook: FrameHook) -> FrameHook:
    """Wraps the worker's frame hook: for a tile rendition, it enlarges only the source
    window under the tile and cuts the tile out; other renditions pass through."""

    def tiled(frames: np.ndarray, rendition: Rendition) -> np.ndarray:
        tile = rendition.tile
        if tile is None:
            return hook(frames, rendition)
        _, src_h, src_w, _ = frames.shape
        w = source_window(tile, src_w, src_h)
        window = np.ascontiguousarray(frames[:, w.y : w.y + w.height, w.x : w.x + w.width])
        enlarged = hook(
            window, dataclasses.replace(rendition, width=w.out_width, height=w.out_height)
        )
        if enlarged.shape[1:3] != (w.out_height, w.out_width):
            raise ValueError(
                f"the frame hook returned {enlarged.shape[2]}x{enlarged.shape[1]} for"
                f" {w.out_width}x{w.out_height}"
            )
        return enlarged[:, w.crop_y : w.crop_y + tile.height, w.crop_x : w.crop_x + tile.width]

    return tiled


def tile_map(
    tiles: Sequence[Rendition],
    *,
    playlist_uri: str = "{name}/index.m3u8",
    codecs: Mapping[str, str] | None = None,
    links: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """The JSON tile map for HLS players: the whole frame, the grid, and per tile its
    place and its media playlist (`playlist_uri` with `{name}`), plus `links` (the
    ladder's master playlist, the MPD)."""
    placed = [(r, r.tile) for r in tiles if r.tile is not None]
    if not placed:
        raise ValueError("no tiles")
    frame = placed[0][1]
    return {
        "frame": {"width": frame.frame_width, "height": frame.frame_height},
        "grid": {
            "cols": 1 + max(t.col for _, t in placed),
            "rows": 1 + max(t.row for _, t in placed),
        },
        "tiles": [
            {
                "name": r.name,
                "row": t.row,
                "col": t.col,
                "x": t.x,
                "y": t.y,
                "width": t.width,
                "height": t.height,
                "videoKbps": r.video_kbps,
                "bandwidth": r.bandwidth,
                "codecs": (codecs or {}).get(r.name) or r.codecs,
                "playlist": playlist_uri.format(name=r.name),
            }
            for r, t in placed
        ],
        **dict(links or {}),
    }
