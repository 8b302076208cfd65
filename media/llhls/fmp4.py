"""Box surgery that puts one shared AAC track into each LL rendition's fMP4: the audio
`trak`/`trex` into the video's init segment, an audio `traf` into every part's `moof`;
and `Sink`, where our muxers write.

Why by hand, not one muxer with both streams: the mp4 muxer cuts a fragment on any
track's packet once that track's fragment is `frag_duration` long, so an audio packet
would cut a part before the video's `part_frames` are in it, and the muxer's
cross-stream interleaving would hold the video packet that completes a part until
the next audio packet. Here the video muxer alone decides where parts end (so
INDEPENDENT flags and durations are the video's, as before), and each part carries
the audio packets encoded since the previous part.

Invariants:
- The video track is track 1 (as its muxer wrote it), the audio track 2.
- Fragments use `default-base-is-moof`: every `trun` data offset counts from its
  `moof`'s first byte, so after merging, video samples start right after the `mdat`
  header and the audio samples right after the video's.
- Every audio sample is a sync sample (AAC-LC), declared in the audio `tfhd`.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AAC_CODECS", "AudioSample", "Sink", "timed_samples", "with_audio", "with_audio_track"]

AAC_CODECS = "mp4a.40.2"  # the HLS CODECS entry of the AAC-LC track
AUDIO_TRACK = 2
_SYNC = 0x02000000  # sample_depends_on = 2: depends on no other sample


class Sink(io.RawIOBase):
    """What the muxer writes, taken away by the caller after each packet."""

    def __init__(self) -> None:
        self.pending = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.pending += b
        return len(b)

    def take(self) -> bytes:
        data, self.pending = bytes(self.pending), bytearray()
        return data


@dataclass(frozen=True, slots=True)
class AudioSample:
    """One AAC packet on the audio track's clock (1/sample rate)."""

    data: bytes
    pts: int
    duration: int


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """Top-level boxes as (type, the whole box). No 64-bit sizes: ours never need them."""
    out, i = [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        if size < 8 or i + size > len(data):
            raise ValueError(f"bad box at {i}")
        out.append((data[i + 4 : i + 8], data[i : i + size]))
        i += size
    return out


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _children(box: bytes) -> list[tuple[bytes, bytes]]:
    return _boxes(box[8:])


def _only(boxes: list[tuple[bytes, bytes]], kind: bytes) -> bytes:
    found = [b for k, b in boxes if k == kind]
    if len(found) != 1:
        raise ValueError(f"expected one {kind!r}, found {len(found)}")
    return found[0]


def _retrack(box: bytes, offset_v0: int, offset_v1: int) -> bytes:
    """The full box with its track_ID set to the audio track's."""
    at = offset_v1 if box[8] == 1 else offset_v0
    return box[:at] + struct.pack(">I", AUDIO_TRACK) + box[at + 4 :]


def with_audio_track(video_init: bytes, audio_init: bytes) -> bytes:
    """The video's init segment (ftyp+moov) with the audio init's track added as track 2."""
    top = _boxes(video_init)
    moov = _children(_only(top, b"moov"))
    audio_moov = _children(_only(_boxes(audio_init), b"moov"))
    trak = _children(_only(audio_moov, b"trak"))
    trak = [(k, _retrack(b, 20, 28) if k == b"tkhd" else b) for k, b in trak]
    audio_trex = _retrack(_only(_children(_only(audio_moov, b"mvex")), b"trex"), 12, 12)
    out = []
    for kind, box in moov:
        if kind == b"mvhd":  # next_track_ID is its last field
            box = box[:-4] + struct.pack(">I", AUDIO_TRACK + 1)
        elif kind == b"mvex":
            box = _box(b"mvex", box[8:], audio_trex)
        out.append(box)
        if kind == b"trak":
            out.append(_box(b"trak", *(b for _, b in trak)))
    moov_box = _box(b"moov", *out)
    return b"".join(moov_box if k == b"moov" else b for k, b in top)


def _audio_traf(samples: Sequence[AudioSample], data_offset: int) -> bytes:
    tfhd = _box(b"tfhd", struct.pack(">II", 0x020020, AUDIO_TRACK), struct.pack(">I", _SYNC))
    tfdt = _box(b"tfdt", struct.pack(">IQ", 0x01000000, samples[0].pts))
    entries = b"".join(struct.pack(">II", s.duration, len(s.data)) for s in samples)
    trun = _box(b"trun", struct.pack(">IIi", 0x000301, len(samples), data_offset), entries)
    return _box(b"traf", tfhd, tfdt, trun)


def _with_data_offset(traf: bytes, offset: int) -> bytes:
    """The video traf with its trun's data offset set (the trun must carry one)."""
    out = []
    for kind, box in _children(traf):
        if kind == b"trun":
            if not int.from_bytes(box[9:12], "big") & 1:
                raise ValueError("the video trun has no data offset")
            box = box[:16] + struct.pack(">i", offset) + box[20:]
        out.append(box)
    return _box(b"traf", *out)


def with_audio(fragment: bytes, samples: Sequence[AudioSample]) -> bytes:
    """A video fragment (moof+mdat, maybe after a styp) with `samples` added as track 2.

    Durations are the samples' own; the caller closes timestamp gaps (see
    `timed_samples`)."""
    if not samples:
        return fragment
    top = _boxes(fragment)
    moof = _children(_only(top, b"moof"))
    mdat = _only(top, b"mdat")
    video_data = mdat[8:]
    audio_data = b"".join(s.data for s in samples)
    # Sizes first (offsets are fixed-width), then the offsets themselves.
    traf = _only(moof, b"traf")
    size = 8 + sum(len(b) for _, b in moof) + len(_audio_traf(samples, 0))
    video_traf = _with_data_offset(traf, size + 8)
    audio_traf = _audio_traf(samples, size + 8 + len(video_data))
    new_moof = _box(b"moof", *(video_traf if k == b"traf" else b for k, b in moof), audio_traf)
    assert len(new_moof) == size
    new_mdat = _box(b"mdat", video_data, audio_data)
    out = []
    for kind, box in top:
        out.append(new_moof if kind == b"moof" else new_mdat if kind == b"mdat" else box)
    return b"".join(out)


def timed_samples(samples: Sequence[AudioSample]) -> list[AudioSample]:
    """Each sample lasting until the next one starts (a gap in the source's audio
    would otherwise shift every later sample of the run)."""
    out = list(samples)
    for i in range(len(out) - 1):
        gap = out[i + 1].pts - out[i].pts
        if gap > 0 and gap != out[i].duration:
            out[i] = AudioSample(out[i].data, out[i].pts, gap)
    return out
