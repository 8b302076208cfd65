"""Apple's LL-HLS rules that a parser can check, for tests and for operators.

`problems(text)` returns what is wrong with a media playlist (empty: nothing found):
- the header: #EXTM3U first; EXT-X-VERSION 9 or more when EXT-X-SKIP is used;
  EXT-X-TARGETDURATION present and every EXTINF, rounded, at most it;
- parts: EXT-X-PART-INF:PART-TARGET present when there are EXT-X-PART tags, every
  part's DURATION at most PART-TARGET, each part's URI and DURATION present;
- server control: PART-HOLD-BACK at least 2 x PART-TARGET; CAN-SKIP-UNTIL at least
  6 x TARGETDURATION; a live playlist with parts can block reloads;
- the parts of a whole segment add up to its EXTINF (within one part target), and the
  first part of each segment is INDEPENDENT=YES when the playlist declares
  EXT-X-INDEPENDENT-SEGMENTS;
- numbering, with this package's names (`NNNNNNNN.m4s`, `NNNNNNNN.P.m4s`): segment
  URIs follow EXT-X-MEDIA-SEQUENCE (+ skipped segments) one by one, part indexes run
  0, 1, 2 ... within their segment, and the preload hint names the next part;
- an ended playlist has no preload hint; at most one preload hint per TYPE;
- rendition reports carry URI and LAST-MSN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["problems", "attributes", "ParsedPart"]

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')
_SEG = re.compile(r"^(\d+)\.m4s(\?|$)")
_PART = re.compile(r"^(\d+)\.(\d+)\.m4s(\?|$)")
_EPS = 1e-6


def attributes(tag_line: str) -> dict[str, str]:
    """The attribute list of a tag line, quotes removed."""
    body = tag_line.split(":", 1)[1] if ":" in tag_line else ""
    return {k: v.strip('"') for k, v in _ATTR.findall(body)}


@dataclass(slots=True)
class ParsedPart:
    duration: float
    uri: str
    independent: bool


@dataclass(slots=True)
class _State:
    version: int = 0
    target: int | None = None
    part_target: float | None = None
    media_sequence: int = 0
    skipped: int = 0
    independent_segments: bool = False
    ended: bool = False
    control: dict[str, str] = field(default_factory=dict)
    parts: list[ParsedPart] = field(default_factory=list)  # of the segment being read
    segments: list[tuple[str, float, list[ParsedPart]]] = field(default_factory=list)
    hints: list[dict[str, str]] = field(default_factory=list)
    reports: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def problems(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    st = _State()
    if not lines or lines[0] != "#EXTM3U":
        return ["the playlist does not start with #EXTM3U"]
    extinf: float | None = None
    for line in lines[1:]:
        if line.startswith("#EXTINF:"):
            extinf = float(line[8:].split(",")[0])
        elif not line.startswith("#"):
            st.segments.append((line, extinf or 0.0, st.parts))
            st.parts, extinf = [], None
        else:
            _tag(st, line)
    _check_header(st)
    _check_parts(st)
    _check_numbering(st)
    return st.errors


def _tag(st: _State, line: str) -> None:
    name = line.split(":", 1)[0]
    a = attributes(line)
    value = line.split(":", 1)[1] if ":" in line else ""
    if name == "#EXT-X-VERSION":
        st.version = int(value)
    elif name == "#EXT-X-TARGETDURATION":
        st.target = int(value)
    elif name == "#EXT-X-MEDIA-SEQUENCE":
        st.media_sequence = int(value)
    elif name == "#EXT-X-PART-INF":
        st.part_target = float(a["PART-TARGET"]) if "PART-TARGET" in a else None
    elif name == "#EXT-X-SERVER-CONTROL":
        st.control = a
    elif name == "#EXT-X-SKIP":
        st.skipped = int(a.get("SKIPPED-SEGMENTS", "0"))
    elif name == "#EXT-X-INDEPENDENT-SEGMENTS":
        st.independent_segments = True
    elif name == "#EXT-X-ENDLIST":
        st.ended = True
    elif name == "#EXT-X-PART":
        if "URI" not in a or "DURATION" not in a:
            st.errors.append(f"EXT-X-PART without URI or DURATION: {line}")
            return
        st.parts.append(ParsedPart(float(a["DURATION"]), a["URI"], a.get("INDEPENDENT") == "YES"))
    elif name == "#EXT-X-PRELOAD-HINT":
        st.hints.append(a)
    elif name == "#EXT-X-RENDITION-REPORT":
        st.reports.append(a)
        if "URI" not in a or "LAST-MSN" not in a:
            st.errors.append(f"EXT-X-RENDITION-REPORT without URI or LAST-MSN: {line}")


def _check_header(st: _State) -> None:
    if st.skipped and st.version < 9:
        st.errors.append(f"EXT-X-SKIP needs EXT-X-VERSION 9 or more, not {st.version}")
    if st.target is None:
        st.errors.append("no EXT-X-TARGETDURATION")
        return
    for uri, duration, _ in st.segments:
        if round(duration) > st.target:
            st.errors.append(f"{uri}: EXTINF {duration} over TARGETDURATION {st.target}")
    c = st.control
    if "CAN-SKIP-UNTIL" in c and float(c["CAN-SKIP-UNTIL"]) < 6 * st.target - _EPS:
        st.errors.append(f"CAN-SKIP-UNTIL {c['CAN-SKIP-UNTIL']} under 6 x TARGETDURATION")
    if st.skipped and "CAN-SKIP-UNTIL" not in c:
        st.errors.append("EXT-X-SKIP in a playlist without CAN-SKIP-UNTIL")
    if len({h.get("TYPE") for h in st.hints}) != len(st.hints):
        st.errors.append("more than one EXT-X-PRELOAD-HINT of a TYPE")
    if st.ended and st.hints:
        st.errors.append("an ended playlist has a preload hint")


def _check_parts(st: _State) -> None:
    all_parts = [p for _, _, ps in st.segments for p in ps] + st.parts
    if not all_parts:
        return
    pt = st.part_target
    if pt is None:
        st.errors.append("EXT-X-PART without EXT-X-PART-INF:PART-TARGET")
        return
    for p in all_parts:
        if p.duration > pt + _EPS:
            st.errors.append(f"part {p.uri}: DURATION {p.duration} over PART-TARGET {pt}")
    hold = st.control.get("PART-HOLD-BACK")
    if hold is None or float(hold) < 2 * pt - _EPS:
        st.errors.append(f"PART-HOLD-BACK {hold} under 2 x PART-TARGET {pt}")
    if not st.ended and st.control.get("CAN-BLOCK-RELOAD") != "YES":
        st.errors.append("a live playlist with parts without CAN-BLOCK-RELOAD=YES")
    for uri, duration, parts in st.segments:
        if parts and abs(sum(p.duration for p in parts) - duration) > pt:
            st.errors.append(f"{uri}: its parts do not add up to its EXTINF {duration}")
    starts = [ps for _, _, ps in st.segments if ps] + ([st.parts] if st.parts else [])
    for ps in starts:
        first = _PART.match(ps[0].uri)
        if st.independent_segments and first and first.group(2) == "0" and not ps[0].independent:
            st.errors.append(f"part {ps[0].uri} starts a segment but is not INDEPENDENT=YES")


def _check_numbering(st: _State) -> None:
    msn = st.media_sequence + st.skipped
    for uri, _, parts in st.segments:
        m = _SEG.match(uri)
        if m is None:
            return  # not this package's names: nothing more to check
        if int(m.group(1)) != msn:
            st.errors.append(f"{uri}: expected media sequence {msn}")
        _check_part_numbers(st, parts, msn)
        msn += 1
    _check_part_numbers(st, st.parts, msn)
    hint = next((h for h in st.hints if h.get("TYPE") == "PART"), None)
    if hint is not None:
        last = st.parts[-1].uri if st.parts else None
        want = _next_part(last, msn)
        got = _PART.match(hint.get("URI", ""))
        if got is None or (int(got.group(1)), int(got.group(2))) not in want:
            st.errors.append(f"preload hint {hint.get('URI')} is not the next part")


def _check_part_numbers(st: _State, parts: list[ParsedPart], msn: int) -> None:
    parsed = [_PART.match(p.uri) for p in parts]
    numbers = [(int(m.group(1)), int(m.group(2))) for m in parsed if m]
    if not numbers:
        return
    if any(n != msn for n, _ in numbers):
        st.errors.append(f"parts {[p.uri for p in parts]} are not all of segment {msn}")
    indexes = [i for _, i in numbers]
    if indexes != list(range(indexes[0], indexes[0] + len(indexes))):
        st.errors.append(f"part indexes of segment {msn} are not consecutive: {indexes}")


def _next_part(last: str | None, msn: int) -> set[tuple[int, int]]:
    """Where the next part may be: after the last listed part, or the start of the
    next segment (the last part of a segment is only known when the next begins)."""
    m = _PART.match(last) if last else None
    if m is None:
        return {(msn, 0)}
    return {(msn, int(m.group(2)) + 1), (msn + 1, 0)}
