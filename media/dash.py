"""The DASH MPD of a tiled stream (20K): its ladder and every tile, placed by SRD.

    MPD (the same segment files HLS serves: profile isoff-live for fMP4, mp2t-simple
    for MPEG-TS)
    └── Period
        ├── AdaptationSet  the ladder (8K, 4K, ...), SRD 0,0,0,W,H,W,H   Role main
        │                  (MPEG-TS; its fMP4 HDR twins, if any, in a set of their own)
        └── AdaptationSet  per tile, SRD 0,x,y,w,h,W,H (urn:mpeg:dash:srd:2014):
                           CMAF (fMP4: `init.mp4` + `.m4s`, `media.hdr.uses_fmp4`),
                           video only (the ladder carries the audio)

Invariants:
- Every AdaptationSet carries the SRD SupplementalProperty in one coordinate space,
  the whole tiled frame, so a player that knows SRD composes tiles over the
  ladder's picture; one that does not keeps to the ladder (first and `Role main`).
- All AdaptationSets share one SegmentTimeline: every rendition of a segment has the
  same number, start and duration (tiles are cut from the same frames).
- Times are milliseconds since `availability_start` (the stream's start), taken from
  each segment's wall-clock time, so a live window's first `S@t` never moves.
- fMP4 segments carry their source timestamps (`media.cmaf`: tfdt on the stream's
  clock), which ISOBMFF players place by: given `media_start_s` (the first listed
  segment's decode time), fMP4 timelines are written in media time with a
  `presentationTimeOffset` that maps them onto the wall-clock timeline of the others
  (a Period start absorbs a media clock behind the wall clock: offsets are unsigned).

Limits: the ladder stays MPEG-TS (thumbnails, clips and VOD read it as such), so a
player that takes only ISOBMFF (dash.js, Shaka) plays the tiles (and HDR twins), not
the SDR ladder's set.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.dom import minidom

from .ladder import Rendition
from .playlist import with_suffix

__all__ = ["MpdSegment", "SRD_SCHEME", "tile_mpd"]

SRD_SCHEME = "urn:mpeg:dash:srd:2014"
PROFILE = "urn:mpeg:dash:profile:mp2t-simple:2011"
PROFILE_ISOBMFF = "urn:mpeg:dash:profile:isoff-live:2011"
_TIMESCALE = 1000


@dataclass(frozen=True, slots=True)
class MpdSegment:
    number: int  # the HLS media sequence: `$Number$` in the segment URI
    start_s: float  # seconds since the MPD's availability start
    duration_s: float


@dataclass(frozen=True, slots=True)
class _Timing:
    """Where each container's timeline sits: TS on the wall clock, fMP4 on its media
    clock (`shift_ms` after the wall clock), both brought to one presentation time by
    a Period start and per-set `presentationTimeOffset`s (unsigned, hence the start)."""

    shift_ms: int  # fMP4 media time minus wall-clock time

    @property
    def period_ms(self) -> int:
        return max(0, -self.shift_ms)

    def offset_ms(self, fmp4: bool) -> int:
        return self.shift_ms + self.period_ms if fmp4 else self.period_ms


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
    fmp4: Collection[str] = (),
    fmp4_uri: str = "{name}/$Number%08d$.m4s",
    init_uri: str = "{name}/init.mp4",
    media_start_s: float | None = None,
) -> str:
    """The MPD (UTF-8 XML text). `media_uri` is the segment template with `{name}` for
    the rendition; `uri_suffix` (a playback token) is appended to it. Renditions named
    in `fmp4` are CMAF: `fmp4_uri` and `init_uri` instead, placed in time by
    `media_start_s` (the first listed segment's media time; None: its wall-clock)."""
    if not tiles or tiles[0].tile is None:
        raise ValueError("a tile MPD needs tiles")
    frame = tiles[0].tile
    shift = 0
    if media_start_s is not None and segments:
        shift = round((media_start_s - segments[0].start_s) * _TIMESCALE)
    timing = _Timing(shift)
    sets = _sets(ladder, tiles, set(fmp4), frame.frame_width, frame.frame_height)
    profiles = sorted({PROFILE_ISOBMFF if is_fmp4 else PROFILE for _, _, _, is_fmp4 in sets})
    attrs = _mpd_attrs(live, availability_start, published, segments, update_s)
    mpd = ET.Element("MPD", {**attrs, "profiles": ",".join(profiles)})
    start = f"PT{timing.period_ms / _TIMESCALE:.3f}S" if timing.period_ms else "PT0S"
    period = ET.SubElement(mpd, "Period", id="0", start=start)
    codecs = codecs or {}
    for i, (renditions, srd, main, is_fmp4) in enumerate(sets):
        aset = ET.SubElement(
            period,
            "AdaptationSet",
            id=str(i),
            contentType="video",
            mimeType="video/mp4" if is_fmp4 else "video/mp2t",
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
        uris = (fmp4_uri, init_uri) if is_fmp4 else (media_uri, None)
        for r in renditions:
            _representation(
                aset,
                r,
                codecs.get(r.name) or r.codecs,
                uris,
                uri_suffix,
                segments,
                timing.shift_ms if is_fmp4 else 0,
                timing.offset_ms(is_fmp4),
            )
    text = ET.tostring(mpd, encoding="unicode")
    return minidom.parseString(text).toprettyxml(indent="  ", encoding="UTF-8").decode()


def _sets(
    ladder: Sequence[Rendition],
    tiles: Sequence[Rendition],
    fmp4: Collection[str],
    frame_w: int,
    frame_h: int,
) -> list[tuple[list[Rendition], str, bool, bool]]:
    """(renditions, SRD, main, fMP4) per AdaptationSet: the ladder split by container
    (a set switches within one), the first of it main, then one per tile."""
    full = f"0,0,0,{frame_w},{frame_h},{frame_w},{frame_h}"
    sets: list[tuple[list[Rendition], str, bool, bool]] = []
    for is_fmp4 in (False, True):
        group = [r for r in ladder if (r.name in fmp4) == is_fmp4]
        if group:
            sets.append((group, full, not sets, is_fmp4))
    sets += [([t], t.tile.srd(), False, t.name in fmp4) for t in tiles if t.tile is not None]
    return sets


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
    uris: tuple[str, str | None],
    uri_suffix: str,
    segments: Sequence[MpdSegment],
    shift_ms: int,
    offset_ms: int,
) -> None:
    """One Representation: its SegmentTemplate (`uris`: media, and init for fMP4) and
    the timeline moved by `shift_ms` into its media time, `offset_ms` its PTO."""
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
    media_uri, init_uri = uris
    attrs = {
        "timescale": str(_TIMESCALE),
        "media": with_suffix(media_uri.format(name=r.name), uri_suffix),
        "startNumber": str(segments[0].number if segments else 0),
    }
    if init_uri is not None:
        attrs["initialization"] = with_suffix(init_uri.format(name=r.name), uri_suffix)
    if offset_ms:
        attrs["presentationTimeOffset"] = str(offset_ms)
    template = ET.SubElement(rep, "SegmentTemplate", attrs)
    timeline = ET.SubElement(template, "SegmentTimeline")
    for s in segments:
        ET.SubElement(
            timeline,
            "S",
            t=str(round(s.start_s * _TIMESCALE) + shift_ms),
            d=str(max(1, round(s.duration_s * _TIMESCALE))),
        )


def _duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
