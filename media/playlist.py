"""HLS playlists (RFC 8216) for the segments the transcoder makes.

Invariants:
- Every URI is relative (a media playlist names its segments, the master names the
  media playlists), so the same text works under any API path; `uri_suffix` (a
  signed query string) is appended to each URI as it is rendered.
- EXT-X-TARGETDURATION is the ceiling of the longest segment listed and, in a
  `LivePlaylist`, never shrinks (RFC 8216 4.3.3.1: it must not change).
- EXT-X-MEDIA-SEQUENCE is the first listed segment's sequence number, and
  EXT-X-DISCONTINUITY-SEQUENCE counts the discontinuities that slid out of the window.
- Each segment carries its EXT-X-PROGRAM-DATE-TIME (wall clock of its first frame),
  and EXT-X-DISCONTINUITY marks the first segment after a publisher reconnected.
- A segment a rung did not encode (shed under backpressure) is listed with EXT-X-GAP,
  so every rung numbers the same segments alike; its URI has nothing behind it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .ladder import Rendition

__all__ = [
    "FMP4_HLS_VERSION",
    "HLS_VERSION",
    "LivePlaylist",
    "SegmentRecord",
    "master_playlist",
    "media_playlist",
    "segment_name",
    "with_suffix",
]

# 3: decimal EXTINF durations. Nothing newer is used (no byte ranges) except by fMP4
# renditions (HDR, media.hdr): EXT-X-MAP without I-frames-only needs 6; Apple's
# authoring spec asks 7 for fMP4, and VIDEO-RANGE sits in a master of that version.
HLS_VERSION = 3
FMP4_HLS_VERSION = 7


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """A segment as a playlist sees it; the columns of a segments table.

    `uri` is relative to the media playlist; `size` is the segment's bytes.
    """

    sequence: int
    uri: str
    duration: float
    size: int = 0
    program_date_time: datetime | None = None
    discontinuity: bool = False
    gap: bool = False  # EXT-X-GAP: a rung shed under backpressure; players must not load it


def segment_name(sequence: int, ext: str = "ts") -> str:
    """The file name of a segment, sortable as text for ~3 years of 2 s segments."""
    return f"{sequence:08d}.{ext}"


def with_suffix(uri: str, suffix: str) -> str:
    """Append a query string, joining with `&` when the URI already has one."""
    if not suffix:
        return uri
    if suffix[0] in "?&":
        return uri + ("&" if "?" in uri else "?") + suffix[1:]
    return uri + suffix


def media_playlist(
    segments: Sequence[SegmentRecord],
    *,
    ended: bool = False,
    target_duration: int | None = None,
    discontinuity_sequence: int = 0,
    playlist_type: str | None = None,
    uri_suffix: str = "",
    map_uri: str | None = None,
) -> str:
    """A rendition's media playlist. `playlist_type` is None (sliding live window),
    "EVENT" (segments only added) or "VOD". `map_uri`: the init segment of an fMP4
    rendition (`.m4s` segments): EXT-X-MAP, and EXT-X-VERSION 7 (RFC 8216 7: fMP4)."""
    target = target_duration or max((math.ceil(s.duration) for s in segments), default=1)
    if any(round(s.duration) > target for s in segments):
        raise ValueError(f"a segment is longer than the target duration {target}")
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{FMP4_HLS_VERSION if map_uri else HLS_VERSION}",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-MEDIA-SEQUENCE:{segments[0].sequence if segments else 0}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    if playlist_type:
        if playlist_type not in ("EVENT", "VOD"):
            raise ValueError(f"playlist_type must be EVENT or VOD, got {playlist_type!r}")
        lines.append(f"#EXT-X-PLAYLIST-TYPE:{playlist_type}")
    # Each segment starts with an IDR frame and is decodable on its own.
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    if map_uri:
        lines.append(f'#EXT-X-MAP:URI="{with_suffix(map_uri, uri_suffix)}"')
    for s in segments:
        if s.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if s.program_date_time is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(s.program_date_time)}")
        if s.gap:
            lines.append("#EXT-X-GAP")
        lines.append(f"#EXTINF:{s.duration:.5f},")
        lines.append(with_suffix(s.uri, uri_suffix))
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def master_playlist(
    renditions: Sequence[Rendition],
    *,
    playlist_uri: str = "{name}/index.m3u8",
    codecs: Mapping[str, str] | None = None,
    has_audio: bool = True,
    uri_suffix: str = "",
) -> str:
    """The multivariant playlist, one EXT-X-STREAM-INF per rendition, in the given order.

    `codecs` maps rendition names to CODECS read back from encoded segments
    (`RenditionSegment.codecs`); without it each rendition's nominal string is used.
    """
    # VIDEO-RANGE on every variant once one is HDR (absent means SDR, but say so).
    hdr = any(r.video_range != "SDR" for r in renditions)
    version = FMP4_HLS_VERSION if hdr else HLS_VERSION
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for r in renditions:
        codec = (codecs or {}).get(r.name) or (r.codecs if has_audio else r.video_codec_string)
        attributes = [
            f"BANDWIDTH={r.bandwidth}",
            f"AVERAGE-BANDWIDTH={r.average_bandwidth}",
            f"RESOLUTION={r.width}x{r.height}",
            f"FRAME-RATE={r.fps:.3f}",
            f'CODECS="{codec}"',
        ]
        if hdr:
            attributes.append(f"VIDEO-RANGE={r.video_range}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(with_suffix(playlist_uri.format(name=r.name), uri_suffix))
    return "\n".join(lines) + "\n"


class LivePlaylist:
    """One rendition's growing playlist: a sliding window (or every segment, with
    `window=None`), and the sequence counters that must survive the sliding."""

    def __init__(self, window: int | None = 6) -> None:
        if window is not None and window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self.segments: deque[SegmentRecord] = deque()
        self.discontinuity_sequence = 0
        self.target_duration = 1
        self.ended = False

    def append(self, segment: SegmentRecord) -> None:
        if self.ended:
            raise ValueError("the playlist has ended")
        if self.segments and segment.sequence <= self.segments[-1].sequence:
            raise ValueError(
                f"segment {segment.sequence} is not after {self.segments[-1].sequence}"
            )
        self.segments.append(segment)
        self.target_duration = max(self.target_duration, math.ceil(segment.duration))
        while self.window is not None and len(self.segments) > self.window:
            gone = self.segments.popleft()
            self.discontinuity_sequence += gone.discontinuity

    def end(self) -> None:
        self.ended = True

    def render(self, uri_suffix: str = "") -> str:
        return media_playlist(
            list(self.segments),
            ended=self.ended,
            target_duration=self.target_duration,
            discontinuity_sequence=self.discontinuity_sequence,
            playlist_type="EVENT" if self.window is None else None,
            uri_suffix=uri_suffix,
        )


def _iso(t: datetime) -> str:
    """RFC 3339 with milliseconds; naive datetimes are taken as UTC."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
