"""The LL-HLS media playlist (RFC 8216bis: EXT-X-PART, EXT-X-PRELOAD-HINT, blocking
reload, delta updates, rendition reports) of one rendition.

Invariants:
- Segments are listed in media-sequence order, each with EXT-X-PROGRAM-DATE-TIME;
  EXT-X-MAP names the init segment before the first listed segment and again after
  each discontinuity (a new encoder session, a new init segment).
- Parts are listed for the segments that end within `PART_WINDOW` target durations of
  the playlist's end, and for the segment being filled (its parts only, after the last
  whole segment); the first part of a segment is INDEPENDENT=YES (segments start
  with an IDR).
- PART-HOLD-BACK is 3 x PART-TARGET (the spec's minimum is 2x), CAN-SKIP-UNTIL 6 x
  TARGETDURATION (its minimum); a delta update (`skip=True`) replaces the segments
  that start before CAN-SKIP-UNTIL from the end with EXT-X-SKIP and is version 9.
- A live playlist ends with a preload hint of the next part; an ended one has
  EXT-X-ENDLIST, and neither parts nor hints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from media.playlist import _iso, with_suffix

__all__ = [
    "LlPart",
    "LlSegment",
    "RenditionReport",
    "PART_WINDOW",
    "SKIP_TARGETS",
    "HOLD_BACK_PARTS",
    "Variant",
    "ll_master_playlist",
    "ll_media_playlist",
    "skippable",
]

PART_WINDOW = 3  # target durations from the end within which parts are listed
SKIP_TARGETS = 6  # CAN-SKIP-UNTIL, in target durations
HOLD_BACK_PARTS = 3  # PART-HOLD-BACK, in part targets


@dataclass(frozen=True, slots=True)
class LlPart:
    index: int
    duration: float
    uri: str
    independent: bool = False


@dataclass(frozen=True, slots=True)
class LlSegment:
    """A whole segment (`complete`), or the one being filled (its parts only)."""

    sequence: int
    duration: float
    uri: str
    map_uri: str
    program_date_time: datetime
    parts: tuple[LlPart, ...] = ()
    discontinuity: bool = False
    complete: bool = True


@dataclass(frozen=True, slots=True)
class RenditionReport:
    uri: str
    last_msn: int
    last_part: int | None


@dataclass(frozen=True, slots=True)
class _Header:
    target_duration: int
    part_target: float
    media_sequence: int
    discontinuity_sequence: int
    ended: bool
    skipped: int
    lines: list[str] = field(default_factory=list)


def skippable(segments: Sequence[LlSegment], target_duration: int) -> int:
    """How many leading segments a delta update may skip: those that start more than
    CAN-SKIP-UNTIL before the playlist's end."""
    until = SKIP_TARGETS * target_duration
    end = sum(s.duration for s in segments if s.complete)
    start, n = 0.0, 0
    for s in segments:
        if not s.complete or end - start <= until:
            break
        start += s.duration
        n += 1
    return n


def ll_media_playlist(
    segments: Sequence[LlSegment],
    *,
    target_duration: int,
    part_target: float,
    discontinuity_sequence: int = 0,
    ended: bool = False,
    skip: bool = False,
    preload_hint: str | None = None,
    reports: Sequence[RenditionReport] = (),
    uri_suffix: str = "",
) -> str:
    """The playlist text; `segments` oldest first, the last one possibly incomplete."""
    skipped = skippable(segments, target_duration) if skip and not ended else 0
    first = segments[0].sequence if segments else 0
    lines = _head(target_duration, part_target, first, discontinuity_sequence, skipped, ended)
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    whole_end = sum(s.duration for s in segments if s.complete)
    t, current_map = 0.0, None
    for i, s in enumerate(segments):
        t_end = t + s.duration
        if i >= skipped:
            if s.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if s.map_uri != current_map:
                lines.append(f'#EXT-X-MAP:URI="{with_suffix(s.map_uri, uri_suffix)}"')
                current_map = s.map_uri
            with_parts = not ended and (
                not s.complete or whole_end - t_end < PART_WINDOW * target_duration
            )
            lines += _segment_lines(s, with_parts, uri_suffix)
        t = t_end
    if ended:
        lines.append("#EXT-X-ENDLIST")
    elif preload_hint is not None:
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{with_suffix(preload_hint, uri_suffix)}"')
    for r in reports:
        attrs = [f'URI="{with_suffix(r.uri, uri_suffix)}"', f"LAST-MSN={r.last_msn}"]
        if r.last_part is not None:
            attrs.append(f"LAST-PART={r.last_part}")
        lines.append("#EXT-X-RENDITION-REPORT:" + ",".join(attrs))
    return "\n".join(lines) + "\n"


def _head(
    target: int, part_target: float, first: int, disc: int, skipped: int, ended: bool
) -> list[str]:
    lines = [
        "#EXTM3U",
        # 9: EXT-X-SKIP (delta updates); 6 covers EXT-X-MAP with fMP4 otherwise.
        f"#EXT-X-VERSION:{9 if skipped else 6}",
        f"#EXT-X-TARGETDURATION:{target}",
    ]
    if not ended:
        lines.append(
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
            f"CAN-SKIP-UNTIL={SKIP_TARGETS * target:.1f},"
            f"PART-HOLD-BACK={HOLD_BACK_PARTS * part_target:.3f}"
        )
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={part_target:.3f}")
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{first}")
    if disc:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{disc}")
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    return lines


def _segment_lines(s: LlSegment, with_parts: bool, suffix: str) -> list[str]:
    lines = [f"#EXT-X-PROGRAM-DATE-TIME:{_iso(s.program_date_time)}"]
    if with_parts:
        for p in s.parts:
            independent = ",INDEPENDENT=YES" if p.independent else ""
            lines.append(
                f'#EXT-X-PART:DURATION={p.duration:.5f},URI="{with_suffix(p.uri, suffix)}"'
                + independent
            )
    if s.complete:
        lines.append(f"#EXTINF:{s.duration:.5f},")
        lines.append(with_suffix(s.uri, suffix))
    return lines


@dataclass(frozen=True, slots=True)
class Variant:
    """One EXT-X-STREAM-INF of the LL master playlist."""

    uri: str
    bandwidth: int
    average_bandwidth: int
    width: int
    height: int
    fps: float
    codecs: str


def ll_master_playlist(variants: Sequence[Variant], *, uri_suffix: str = "") -> str:
    """The multivariant playlist of a low-latency stream, in the given order (version
    6: its LL variants are fMP4 with EXT-X-MAP)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v in variants:
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={v.bandwidth},AVERAGE-BANDWIDTH={v.average_bandwidth},"
            f'RESOLUTION={v.width}x{v.height},FRAME-RATE={v.fps:.3f},CODECS="{v.codecs}"'
        )
        lines.append(with_suffix(v.uri, uri_suffix))
    return "\n".join(lines) + "\n"
