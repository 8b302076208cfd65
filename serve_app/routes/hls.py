"""HLS playback: the master playlist, each rendition's media playlist, its segments.

Playlists are rendered from Postgres rows (`lumalive.store.media`), so any replica
serves them: live, a sliding window of the newest `live_window_segments` segments;
ended, every segment and EXT-X-ENDLIST (VOD).

Access: who is asking is the user of a playback token in the query (`?pt=`, what
players use: they cannot send headers), else the bearer token, else anonymous; then
the stream's visibility is checked as that user, like every other read. Callers who
may not see the stream get 404 on every path. Every URI inside a playlist carries a
playback token for the same user, so a standard player needs nothing but the URL.

This is the classic ladder (whole segments, every player). A stream in latency mode `low` is
also served as LL-HLS (CMAF parts, blocking reload) by `serve_app.routes.llhls`, under
`/llhls/`, with the same access rules (`serve_app.viewer`).
"""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Response

from lumalive.errors import NotFound
from lumalive.store import media
from media.ladder import Rendition
from media.playlist import SegmentRecord, master_playlist, media_playlist, segment_name
from serve_app.deps import DbDep, MediaStorageDep, SettingsDep
from serve_app.responses import ERRORS
from serve_app.segment_response import segment_response
from serve_app.viewer import PlaybackToken, ViewerDep

__all__ = ["PLAYLIST_TYPE", "SEGMENT_TYPE", "PlaybackToken", "RenditionName", "router"]

router = APIRouter(
    prefix="/api/live-streaming/{stream_id}/hls", tags=["playback"], responses=ERRORS
)

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
# MPEG-TS, or an fMP4 (HDR) rendition's .m4s media segments and its init.mp4 (sql/0011).
_SEGMENT = re.compile(r"^(?:(\d{1,12})\.(ts|m4s)|init\.mp4)$")

RenditionName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,20}$")]


def _segment(segment: Annotated[str, Path(max_length=20)]) -> re.Match[str]:
    """The segment's name parsed; a dependency declared before the viewer's so that a
    name that cannot be a segment is 404 before the stream is looked up."""
    match = _SEGMENT.match(segment)
    if match is None:
        raise NotFound("no such segment", "segment_not_found")
    return match


@router.get(
    "/master.m3u8",
    name="hls_master",
    response_class=Response,
    responses={200: {"content": {PLAYLIST_TYPE: {}}}},
)
async def master(stream_id: UUID, viewer: ViewerDep, db: DbDep) -> Response:
    """The multivariant playlist: one entry per rendition, highest first."""
    async with db.acting(viewer.user) as conn:
        rows = await media.renditions(conn, stream_id)
    if not rows:
        raise NotFound("the stream has no media yet", "media_not_ready")
    renditions = [Rendition.from_row(r) for r in rows]
    body = master_playlist(
        renditions, codecs={r["name"]: r["codecs"] for r in rows}, uri_suffix=viewer.suffix
    )
    return Response(body, media_type=PLAYLIST_TYPE, headers={"Cache-Control": viewer.cache()})


@router.get(
    "/{rendition}/index.m3u8",
    response_class=Response,
    responses={200: {"content": {PLAYLIST_TYPE: {}}}},
)
async def media_index(
    stream_id: UUID,
    rendition: RenditionName,
    viewer: ViewerDep,
    settings: SettingsDep,
    db: DbDep,
) -> Response:
    """A rendition's playlist: the live window, or every segment once the stream ended."""
    ended = viewer.ended
    window = None if ended else settings.live_window_segments
    async with db.acting(viewer.user) as conn:
        rows = await media.playlist(conn, stream_id, rendition, window)
        if not rows and rendition not in {
            r["name"] for r in await media.renditions(conn, stream_id)
        }:
            raise NotFound("no such rendition", "rendition_not_found")
    records = [
        SegmentRecord(
            sequence=r["sequence"],
            uri=segment_name(r["sequence"], r["path"].rsplit(".", 1)[-1]),  # ts | m4s
            duration=r["duration"],
            size=r["bytes"],
            program_date_time=r["program_date_time"],
            discontinuity=r["discontinuity"],
            gap=r["gap"],
        )
        for r in rows
    ]
    body = media_playlist(
        records,
        ended=ended,
        target_duration=rows[-1]["target_duration"]
        if rows
        else max(1, round(settings.segment_seconds)),
        discontinuity_sequence=rows[0]["discontinuity_sequence"] if rows else 0,
        playlist_type="VOD" if ended else None,
        uri_suffix=viewer.suffix,
        # fMP4 (HDR) renditions: their init segment (media.cmaf, sql/0011).
        map_uri="init.mp4" if rows and rows[0]["path"].endswith(".m4s") else None,
    )
    return Response(body, media_type=PLAYLIST_TYPE, headers={"Cache-Control": viewer.cache()})


@router.get(
    "/{rendition}/{segment}",
    response_class=Response,
    responses={200: {"content": {SEGMENT_TYPE: {}}}},
)
async def media_segment(
    stream_id: UUID,
    rendition: RenditionName,
    match: Annotated[re.Match[str], Depends(_segment)],
    viewer: ViewerDep,
    settings: SettingsDep,
    db: DbDep,
    storage: MediaStorageDep,
) -> Response:
    """One segment (MPEG-TS). Immutable once published."""
    segment = match.string
    async with db.acting(viewer.user) as conn:
        if match.group(1) is None:
            row = await media.init_segment(conn, stream_id, rendition)
        else:
            row = await media.segment(conn, stream_id, rendition, int(match.group(1)))
    if row is None or (match.group(2) and not row["path"].endswith("." + match.group(2))):
        raise NotFound("no such segment", "segment_not_found")
    scope = "public" if viewer.public else "private"
    headers = {"Cache-Control": f"{scope}, max-age=31536000, immutable"}
    if not segment.endswith(".ts"):  # RFC 8216 3.3 / 3.5; Starlette keeps a given type
        headers["Content-Type"] = "video/mp4" if match.group(1) is None else "video/iso.segment"
    try:  # a file, proxied from a bucket (Range too), or a presigned redirect
        return await segment_response(
            storage, row["path"], headers, public=scope == "public", settings=settings
        )
    except KeyError:
        raise NotFound("segment file is missing", "segment_not_found") from None
