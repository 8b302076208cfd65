"""The DASH MPD of a tiled stream (20K): its ladder and every tile, placed by SRD.

    MPD (profile mp2t-simple: our segments are MPEG-TS, the same files HLS serves)
    └── Period
        ├── AdaptationSet  the ladder (8K, 4K, ...), SRD 0,0,0,W,H,W,H   Role main
        └── AdaptationSet  per tile, SRD 0,x,y,w,h,W,H (urn:mpeg:dash:srd:2014)

Invariants:
- Every AdaptationSet carries the SRD SupplementalProperty in one coordinate space,
  the whole tiled frame, so a player that knows SRD composes tiles over the
  ladder's picture; one that does not keeps to the ladder (first and `Role main`).
- All AdaptationSets share one SegmentTimeline: every rendition of a segment has the
  same number, start and duration (tiles are cut from the same frames).
- Times are milliseconds since `availability_start` (the stream's start), taken from
  each segment's wall-clock time, so a live window's first `S@t` never moves.

Limits: MPEG-TS in DASH (ISO/IEC 23009-1 `urn:mpeg:dash:profile:mp2t-simple:2011`)
is what we have without fMP4 muxing; players that only take ISOBMFF (dash.js, Shaka)
need CMAF segments of the same tiles.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.dom import minidom

from .ladder import Rendition
from .playlist import with_suffix

__all__ = ["MpdSegment", "SRD_SCHEME", "tile_mpd"]

SRD_SCHEME = "urn:mpeg:dash:srd:2014"
PROFILE = "urn:mpeg:dash:profile:mp2t-simple:2011"
_TIMESCALE = 1000


@dataclass(frozen=True, slots=True)
class MpdSegment:
    number: int  # the HLS media sequence: `$Number$` in the segment URI
    start_s: float  # seconds since the MPD's availability start
    duration_s: float


def tile_mpd(
    ladder: Sequence[Rendition],
    tiles: Sequence[Rendition],
    segments: Sequence[MpdSegment],
    *,
    live: bool,
    availability_start: datetime,
    published: datetime,
    media_uri: str = "{name}/$Number%08d$.ts",
    uri_suffix: str = "",
    codecs: Mapping[str, str] | None = None,
    update_s: float = 2.0,
) -> str:
    """The MPD (UTF-8 XML text). `media_uri` is the segment template with `{name}` for
    the rendition; `uri_suffix` (a playback token) is appended to it."""
    if not tiles or tiles[0].tile is None:
        raise ValueError("a tile MPD needs tiles")
    frame = tiles[0].tile
    mpd = ET.Element("MPD", _mpd_attrs(live, availability_start, published, segments, update_s))
    period = ET.SubElement(mpd, "Period", id="0", start="PT0S")
    codecs = codecs or {}
    full = (
        f"0,0,0,{frame.frame_width},{frame.frame_height},{frame.frame_width},{frame.frame_height}"
    )
    sets = [(list(ladder), full, True)] + [
        ([t], t.tile.srd(), False) for t in tiles if t.tile is not None
    ]
    for i, (renditions, srd, main) in enumerate(sets):
        if not renditions:
            continue
        aset = ET.SubElement(
            period,
            "AdaptationSet",
            id=str(i),
            contentType="video",
            mimeType="video/mp2t",
            segmentAlignment="true",
            bitstreamSwitching="true",
            startWithSAP="1",
        )
        ET.SubElement(aset, "SupplementalProperty", schemeIdUri=SRD_SCHEME, value=srd)
        ET.SubElement(
            aset,
            "Role",
            schemeIdUri="urn:mpeg:dash:role:2011",
            value="main" if main else "alternate",
        )
        for r in renditions:
            _representation(
                aset, r, codecs.get(r.name) or r.codecs, media_uri, uri_suffix, segments
            )
    text = ET.tostring(mpd, encoding="unicode")
    return minidom.parseString(text).toprettyxml(indent="  ", encoding="UTF-8").decode()


def _mpd_attrs(
    live: bool,
    start: datetime,
    published: datetime,
    segments: Sequence[MpdSegment],
    update_s: float,
) -> dict[str, str]:
    longest = max((s.duration_s for s in segments), default=update_s)
    attrs = {
        "xmlns": "urn:mpeg:dash:schema:mpd:2011",
        "profiles": PROFILE,
        "type": "dynamic" if live else "static",
        "minBufferTime": _duration(longest),
        "availabilityStartTime": _utc(start),
        "publishTime": _utc(published),
    }
    if live:
        window = sum(s.duration_s for s in segments)
        attrs["minimumUpdatePeriod"] = _duration(update_s)
        attrs["timeShiftBufferDepth"] = _duration(max(window, longest))
        attrs["suggestedPresentationDelay"] = _duration(3 * longest)
    else:
        end = max((s.start_s + s.duration_s for s in segments), default=0.0)
        attrs["mediaPresentationDuration"] = _duration(end)
    return attrs


def _representation(
    aset: ET.Element,
    r: Rendition,
    codecs: str,
    media_uri: str,
    uri_suffix: str,
    segments: Sequence[MpdSegment],
) -> None:
    rep = ET.SubElement(
        aset,
        "Representation",
        id=r.name,
        bandwidth=str(r.bandwidth),
        width=str(r.width),
        height=str(r.height),
        frameRate=f"{r.fps:g}",
        codecs=codecs,
    )
    template = ET.SubElement(
        rep,
        "SegmentTemplate",
        timescale=str(_TIMESCALE),
        media=with_suffix(media_uri.format(name=r.name), uri_suffix),
        startNumber=str(segments[0].number if segments else 0),
    )
    timeline = ET.SubElement(template, "SegmentTimeline")
    for s in segments:
        ET.SubElement(
            timeline,
            "S",
            t=str(round(s.start_s * _TIMESCALE)),
            d=str(max(1, round(s.duration_s * _TIMESCALE))),
        )


def _duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
