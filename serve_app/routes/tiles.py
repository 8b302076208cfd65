"""Tile manifests of a 20K stream: the JSON tile map (for HLS players: each tile's media
playlist and place in the frame) and the DASH MPD (the ladder and every tile, placed
by SRD). The tiles' playlists and segments themselves are the HLS routes' (a tile is a
rendition row with a tile position, sql/0010), so these documents only point there.

Access is HLS's (`serve_app.viewer`): a playback token (`?pt=`) or the bearer
token, the stream's visibility checked as that user, 404 for a caller who may not see
it, and every URI inside carries a playback token for the same user.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from lumalive.errors import NotFound
from lumalive.store import media
from media.cmaf import INIT_NAME, first_decode_s
from media.dash import MpdSegment, tile_mpd
from media.ladder import Rendition
from media.playlist import with_suffix
from media.storage import SegmentStorage
from media.tile_renditions import tile_map
from serve_app.deps import DbDep, MediaStorageDep, SettingsDep
from serve_app.responses import ERRORS
from serve_app.viewer import ViewerDep

router = APIRouter(
    prefix="/api/live-streaming/{stream_id}/tiles", tags=["playback"], responses=ERRORS
)

MPD_TYPE = "application/dash+xml"
# Relative to .../{id}/tiles/: the HLS routes of the same stream.
_HLS = "../hls/"
# Bytes of a segment read for its first moof (a few KB even at 60 fps; the mdat follows).
_HEAD_BYTES = 64 * 1024


async def _tiled(db: Any, user: UUID | None, stream_id: UUID) -> list[dict[str, Any]]:
    """The stream's rendition rows, tiles included; NotFound unless it has tiles."""
    async with db.acting(user) as conn:
        rows: list[dict[str, Any]] = await media.renditions(conn, stream_id, tiles=True)
    if not any(r["tile_row"] is not None for r in rows):
        raise NotFound(
            "the stream has no tiles (only 20K with enableAI, once its first segment is out)",
            "tiles_not_available",
        )
    return rows


@router.get("/tiles.json", responses={200: {"content": {"application/json": {}}}})
async def tiles_json(stream_id: UUID, viewer: ViewerDep, db: DbDep) -> JSONResponse:
    """The tile map: the frame, the grid, each tile's place and media playlist, and the
    ladder's master playlist and the MPD."""
    rows = await _tiled(db, viewer.user, stream_id)
    suffix = viewer.suffix
    tiles = [Rendition.from_row(r) for r in rows if r["tile_row"] is not None]
    body = tile_map(
        tiles,
        playlist_uri=with_suffix(_HLS + "{name}/index.m3u8", suffix),
        codecs={r["name"]: r["codecs"] for r in rows},
        links={
            "master": with_suffix(_HLS + "master.m3u8", suffix),
            "mpd": with_suffix("manifest.mpd", suffix),
        },
    )
    return JSONResponse(body, headers={"Cache-Control": viewer.cache()})


@router.get("/manifest.mpd", response_class=Response, responses={200: {"content": {MPD_TYPE: {}}}})
async def manifest_mpd(
    stream_id: UUID,
    viewer: ViewerDep,
    settings: SettingsDep,
    db: DbDep,
    storage: MediaStorageDep,
) -> Response:
    """The DASH MPD: the ladder as one AdaptationSet (MPEG-TS), each tile as another
    (CMAF: init.mp4 and .m4s), placed by SRD; live: the playlist window."""
    stream, user = viewer.stream, viewer.user
    rows = await _tiled(db, user, stream_id)
    renditions = [Rendition.from_row(r) for r in rows]
    live = not viewer.ended
    first_tile = next(r for r in renditions if r.tile is not None)
    async with db.acting(user) as conn:
        window = settings.live_window_segments if live else None
        segments = await media.playlist(conn, stream_id, first_tile.name, window)
    start: datetime = stream["started_at"] or datetime.now(UTC)
    fmp4 = {r["name"] for r in rows if r.get("container") == "fmp4"}  # CMAF tiles
    media_start = await _media_start_s(storage, segments) if first_tile.name in fmp4 else None
    body = tile_mpd(
        [r for r in renditions if r.tile is None],
        [r for r in renditions if r.tile is not None],
        [
            MpdSegment(
                s["sequence"], (s["program_date_time"] - start).total_seconds(), s["duration"]
            )
            for s in segments
        ],
        live=live,
        availability_start=start,
        published=datetime.now(UTC),
        media_uri=_HLS + "{name}/$Number%08d$.ts",
        uri_suffix=viewer.suffix,
        codecs={r["name"]: r["codecs"] for r in rows},
        update_s=settings.segment_seconds,
        fmp4=fmp4,
        fmp4_uri=_HLS + "{name}/$Number%08d$.m4s",
        init_uri=_HLS + "{name}/init.mp4",
        media_start_s=media_start,
    )
    return Response(body, media_type=MPD_TYPE, headers={"Cache-Control": viewer.cache()})


async def _media_start_s(storage: SegmentStorage, segments: list[dict[str, Any]]) -> float | None:
    """The media time of the window's first segment, from the first stored one's moof
    (fMP4 keeps the source clock; `media.dash` maps it onto the wall-clock timeline).
    None when nothing is stored: the MPD then assumes the two clocks agree."""
    for s in segments:
        if s["gap"] or not s["path"]:
            continue
        try:
            init, head = await asyncio.to_thread(_heads, storage, s["path"])
        except (KeyError, OSError):
            return None
        first = first_decode_s(init, head)
        since = (s["program_date_time"] - segments[0]["program_date_time"]).total_seconds()
        return None if first is None else first - since
    return None


def _heads(storage: SegmentStorage, path: str) -> tuple[bytes, bytes]:
    """A fMP4 segment's init and its first bytes (its moof; not the whole mdat)."""
    with storage.open(path) as f:
        head = f.read(_HEAD_BYTES)
    return storage.get(path.rsplit("/", 1)[0] + "/" + INIT_NAME), head
