"""Fragmented MP4 (CMAF-style) for HLS: mux packets into fMP4, split the init segment
from the media segment, and put every fragment on the stream timeline.

HLS carries HEVC (and so every HDR rendition) only in fMP4 (Apple's HLS authoring
spec): one init segment per rendition (`ftyp` + `moov`, named by `EXT-X-MAP`) and media
segments (`styp` + `moof` + `mdat`, `.m4s`). This module is the small general layer under
that, shared by the segment transcoder (`media.mux`) and anything else that cuts fMP4
(e.g. LL-HLS parts):

    iter_boxes(data)              top-level ISO BMFF boxes: (type, offset, size)
    split(data)                   (init, media): ftyp+moov apart from moof/mdat, mfra dropped
    track_timescales(init)        {track_ID: timescale} from the moov's tkhd/mdhd
    base_decode_times(media)      [(track_ID, baseMediaDecodeTime)] of every traf, in order
    shift_decode_times(media, o)  every tfdt moved by a per-track offset (in place, same size)
    first_decode_s(init, head)    a media segment's first decode time of track 1 (video), in
                                  seconds, from its first bytes (for the DASH MPD's timing)
    FragmentedOutput              an mp4 muxer into memory with the fMP4 flags; `finish`
                                  gives an `Fmp4Segment` on the stream timeline

Invariants:
- The init segment depends only on the streams' encoder parameters (codec, size,
  extradata, time bases): the same rendition settings give byte-identical inits for
  every segment, so a rendition stores one `init.mp4` (`INIT_NAME`).
- FFmpeg's mp4 muxer with `empty_moov` starts each track's decode time at 0 (no edit
  list), so a segment muxed on its own would restart the clock. `FragmentedOutput`
  adds each track's first dts back into every `tfdt`: a media segment's
  `baseMediaDecodeTime` is its first sample's dts on the stream timeline (the 90 kHz
  MPEG-TS clock for video), so independently muxed segments concatenate after one
  init and play with their source timestamps.
- `media` never contains `ftyp`, `moov` or `mfra` (a random-access index for a whole
  file, meaningless in a segment); it starts with `styp`.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from av.container import OutputContainer
from av.packet import Packet
from av.stream import Stream

__all__ = [
    "INIT_NAME",
    "MOVFLAGS",
    "Fmp4Segment",
    "FragmentedOutput",
    "base_decode_times",
    "first_decode_s",
    "iter_boxes",
    "shift_decode_times",
    "split",
    "track_timescales",
]

INIT_NAME = "init.mp4"
# One fragment per keyframe (a segment transcoded here is one GOP: one fragment), no
# samples in the moov, data offsets relative to the moof (what CMAF requires).
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
_INIT_BOXES = frozenset({b"ftyp", b"moov"})
_DROPPED = frozenset({b"mfra"})
# styp: ISO/IEC 23009-1 media segment brands (msdh: a media segment, msix: indexed).
_STYP = struct.pack(">I4s4sI4s4s", 24, b"styp", b"msdh", 0, b"msdh", b"msix")
_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"moof", b"traf"})


@dataclass(frozen=True, slots=True)
class Fmp4Segment:
    """One segment's fMP4: its init (ftyp+moov) and media (styp+moof+mdat) bytes."""

    init: bytes
    media: bytes


def iter_boxes(
    data: bytes, start: int = 0, end: int | None = None
) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset, size) of each box between `start` and `end` (top level by
    default). Handles 64-bit `largesize`; raises ValueError on a box that overruns."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        if end - pos < 8:
            raise ValueError(f"truncated box header at {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
        elif size == 0:
            size = end - pos  # to the end of the enclosing space
        if size < 8 or pos + size > end:
            raise ValueError(f"box {kind!r} at {pos} has a bad size {size}")
        yield kind, pos, size
        pos += size


def split(data: bytes) -> Fmp4Segment:
    """The init segment (ftyp+moov) and the media segment (styp + every moof/mdat) of
    a whole fMP4 file; a file-level `mfra` is dropped."""
    init, media = bytearray(), bytearray(_STYP)
    for kind, pos, size in iter_boxes(data):
        if kind in _DROPPED:
            continue
        (init if kind in _INIT_BOXES else media).extend(data[pos : pos + size])
    if not init or len(media) == len(_STYP):
        raise ValueError("not a fragmented MP4: no moov or no fragments")
    return Fmp4Segment(bytes(init), bytes(media))


def _children(
    data: bytes, pos: int, size: int, header: int = 8
) -> Iterator[tuple[bytes, int, int]]:
    return iter_boxes(data, pos + header, pos + size)


def track_timescales(init: bytes) -> dict[int, int]:
    """{track_ID: media timescale} of every trak in the init's moov."""
    out: dict[int, int] = {}
    for kind, pos, size in iter_boxes(init):
        if kind != b"moov":
            continue
        for tk, tpos, tsize in _children(init, pos, size):
            if tk == b"trak":
                track_id, timescale = _trak(init, tpos, tsize)
                out[track_id] = timescale
    return out


def _trak(data: bytes, pos: int, size: int) -> tuple[int, int]:
    track_id = timescale = 0
    for kind, p, s in _children(data, pos, size):
        if kind == b"tkhd":  # full box; track_ID after the (v0: 32-bit, v1: 64-bit) times
            version = data[p + 8]
            track_id = struct.unpack_from(">I", data, p + 12 + (16 if version else 8))[0]
        elif kind == b"mdia":
            for mk, mp, _ in _children(data, p, s):
                if mk == b"mdhd":
                    version = data[mp + 8]
                    timescale = struct.unpack_from(">I", data, mp + 12 + (16 if version else 8))[0]
    return track_id, timescale


def _tfdts(media: bytes) -> Iterator[tuple[int, int, int]]:
    """(track_ID, offset of the tfdt box, version) for every traf of every moof."""
    for kind, pos, size in iter_boxes(media):
        if kind != b"moof":
            continue
        for tk, tpos, tsize in _children(media, pos, size):
            if tk != b"traf":
                continue
            track_id, tfdt = 0, None
            for k, p, _ in _children(media, tpos, tsize):
                if k == b"tfhd":
                    track_id = struct.unpack_from(">I", media, p + 12)[0]
                elif k == b"tfdt":
                    tfdt = p
            if tfdt is not None:
                yield track_id, tfdt, media[tfdt + 8]


def base_decode_times(media: bytes) -> list[tuple[int, int]]:
    """[(track_ID, baseMediaDecodeTime)] of every fragment's tracks, in file order."""
    out = []
    for track_id, p, version in _tfdts(media):
        fmt = ">Q" if version else ">I"
        out.append((track_id, struct.unpack_from(fmt, media, p + 12)[0]))
    return out


def shift_decode_times(media: bytes, offsets: dict[int, int]) -> bytes:
    """`media` with every tfdt of track T moved by `offsets[T]` (media timescale units).
    Sizes do not change, so trun data offsets stay valid. A version-0 (32-bit) tfdt
    that would overflow raises ValueError (FFmpeg writes version 1)."""
    out = bytearray(media)
    for track_id, p, version in _tfdts(media):
        fmt = ">Q" if version else ">I"
        value = struct.unpack_from(fmt, out, p + 12)[0] + offsets.get(track_id, 0)
        if value < 0 or (not version and value >= 1 << 32):
            raise ValueError(f"track {track_id}: decode time {value} does not fit its tfdt")
        struct.pack_into(fmt, out, p + 12, value)
    return bytes(out)


def first_decode_s(init: bytes, head: bytes, track_id: int = 1) -> float | None:
    """The first fragment's decode time of `track_id` (video: FFmpeg's track 1) in
    seconds, from the init's timescale and the segment's first bytes (`head`: enough
    of it to hold the first moof; the mdat after it may be cut off). None if absent."""
    scale = track_timescales(init).get(track_id)
    pos = 0
    while scale and pos + 8 <= len(head):
        size, kind = struct.unpack_from(">I4s", head, pos)
        if size < 8 or (kind == b"moof" and pos + size > len(head)):
            return None  # a 64-bit or cut-off box before the moof: not a segment head
        if kind == b"moof":
            times = dict(base_decode_times(head[pos : pos + size]))
            return times[track_id] / scale if track_id in times else None
        pos += size
    return None


class FragmentedOutput:
    """An mp4 muxer into memory that makes one fMP4 segment on the stream timeline.

    Add streams (`container.add_stream`, all before the first `mux`), mux packets with
    their stream-timeline timestamps, then `finish()`. `movflags` may add fragmenting
    rules (e.g. `frag_duration` in `options` for LL-HLS parts).
    """

    def __init__(self, movflags: str = MOVFLAGS, options: dict[str, str] | None = None) -> None:
        self._buffer = io.BytesIO()
        self.container: OutputContainer = av.open(
            self._buffer, "w", format="mp4", options={"movflags": movflags, **(options or {})}
        )
        self._first_dts: dict[int, tuple[int, Fraction]] = {}  # stream index: (dts, time base)

    def mux(self, packet: Packet[Any]) -> None:
        """Mux one packet (its `stream` set), remembering each stream's first dts."""
        stream: Stream = packet.stream
        if stream.index not in self._first_dts and packet.dts is not None:
            tb = packet.time_base or stream.time_base
            assert tb is not None
            self._first_dts[stream.index] = (packet.dts, Fraction(tb))
        self.container.mux(packet)

    def finish(self) -> Fmp4Segment:
        """Close the muxer; the init and media segments, every tfdt on the stream timeline."""
        self.container.close()
        segment = split(self._buffer.getvalue())
        timescales = track_timescales(segment.init)
        offsets = {}
        for index, (dts, tb) in self._first_dts.items():
            track_id = index + 1  # FFmpeg numbers tracks from 1 in stream order
            scale = timescales.get(track_id)
            if scale:
                offsets[track_id] = round(dts * tb * scale)
        return Fmp4Segment(segment.init, shift_decode_times(segment.media, offsets))

    def abort(self) -> None:
        with contextlib.suppress(av.FFmpegError):  # half-written: nothing to save
            self.container.close()
