"""HDR: what range a source is in, what an enableHDR stream's renditions are, and how
they are signalled; the pixel mapping itself is `media.colour`.

    VideoRange            "SDR" | "PQ" | "HLG" (HLS VIDEO-RANGE; a rendition's target)
    source_range(frame)   from the decoded frame's transfer (`color_trc`) (`media.colour`)
    HdrMetadata           mastering display colour volume and content light level
                          (frame side data) -> x265 `master-display` / `max-cll`
    ColourMapper          a frame in any range -> a frame in the target range, once
                          per source frame and target (renditions share it)
    hdr_renditions        enableHDR's ladder: an HEVC Main10 twin of every rung
    probe_colour          the first decoded frame of a segment: range and metadata

Invariants:
- A frame already in the target range is passed on as it is (HDR passthrough keeps its
  exact 10-bit values; SDR -> SDR costs nothing); other frames are mapped once per
  source frame and target (`ColourMapper`), whichever renditions ask.
- HDR renditions are HEVC Main10 in fMP4 (`uses_fmp4`), 10-bit (`pix_fmt_for`), with
  the source's static metadata where it has any (`x265_colour_params`).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import av
from av.video.frame import VideoFrame

from .colour import VideoRange, convert, source_range
from .ladder import Rendition

__all__ = [
    "ColourMapper",
    "HdrMetadata",
    "SourceColour",
    "VideoRange",
    "hdr_renditions",
    "pix_fmt_for",
    "probe_colour",
    "source_range",
    "uses_fmp4",
    "x265_colour_params",
]


@dataclass(frozen=True, slots=True)
class HdrMetadata:
    """Static HDR metadata: mastering display (x265 units: chromaticity in 0.00002,
    luminance in 0.0001 cd/m²) and content light level (cd/m²); None where absent."""

    master_display: str | None = None  # "G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)"
    max_cll: tuple[int, int] | None = None  # (MaxCLL, MaxFALL)

    @classmethod
    def from_frame(cls, frame: VideoFrame) -> HdrMetadata:
        """From the decoder's side data (AVMasteringDisplayMetadata: display_primaries
        R, G, B then white point as int32 rationals, min and max luminance, two flags;
        AVContentLightMetadata: two unsigned ints)."""
        display = light = None
        # PyAV 18 iterates side data as SideData objects (its stubs say str).
        for sd in cast(Any, frame.side_data).keys():  # noqa: SIM118
            kind, data = sd.type.name, bytes(sd)
            if kind == "MASTERING_DISPLAY_METADATA" and len(data) >= 88:
                display = _master_display(data)
            elif kind == "CONTENT_LIGHT_LEVEL" and len(data) >= 8:
                cll = struct.unpack_from("=II", data)
                light = (int(cll[0]), int(cll[1]))
        return cls(display, light)


def _master_display(data: bytes) -> str | None:
    v = struct.unpack_from("=20i2i", data)  # 10 rationals, has_primaries, has_luminance

    def q(i: int, unit: float) -> int:
        return round(v[2 * i] / v[2 * i + 1] / unit) if v[2 * i + 1] else 0

    if not (v[20] and v[21]):
        return None
    (rx, ry), (gx, gy), (bx, by), (wx, wy) = [
        (q(2 * k, 2e-5), q(2 * k + 1, 2e-5)) for k in range(4)
    ]
    lmin, lmax = q(8, 1e-4), q(9, 1e-4)
    return f"G({gx},{gy})B({bx},{by})R({rx},{ry})WP({wx},{wy})L({lmax},{lmin})"


@dataclass(frozen=True, slots=True)
class SourceColour:
    """What a source is: its range, bit depth and static HDR metadata."""

    range: VideoRange
    bit_depth: int
    metadata: HdrMetadata

    @classmethod
    def of(cls, frame: VideoFrame) -> SourceColour:
        depth = 10 if "10" in frame.format.name else 8
        return cls(source_range(frame), depth, HdrMetadata.from_frame(frame))


def probe_colour(segment: bytes) -> SourceColour:
    """The colour of an MPEG-TS segment's first decoded frame (SDR if none decodes):
    what the ladder of an `enableHDR` stream is built from. Never raises: a segment
    that does not decode is the transcoder's to report."""
    try:
        with av.open(io.BytesIO(segment), "r") as container:
            for frame in container.decode(video=0):
                return SourceColour.of(frame)
    except (av.FFmpegError, ValueError, IndexError):
        pass
    return SourceColour("SDR", 8, HdrMetadata())


def uses_fmp4(rendition: Rendition) -> bool:
    """HDR renditions (HEVC Main10) are fMP4: HLS carries HEVC only there. So are 20K
    tiles (CMAF: the DASH players that compose SRD tiles, dash.js and Shaka, take only
    ISOBMFF; HLS plays them too). Other SDR ones stay MPEG-TS. The one place this is
    decided."""
    return rendition.video_range != "SDR" or rendition.tile is not None


def pix_fmt_for(rendition: Rendition) -> str:
    return "yuv420p10le" if rendition.video_range != "SDR" else "yuv420p"


def hdr_renditions(renditions: Sequence[Rendition], source: VideoRange) -> tuple[Rendition, ...]:
    """enableHDR's ladder: every rung as it is (H.264 SDR, for every player; tone mapped
    from an HDR source), then an HEVC Main10 twin of each named `<name>-hdr` in the
    source's HDR range (an SDR source gets HLG through the BT.2408 mapping). Tiles (20K)
    get no twin."""
    target: VideoRange = source if source != "SDR" else "HLG"
    twins = tuple(
        replace(r, name=f"{r.name}-hdr", codec="hevc", video_range=target)
        for r in renditions
        if r.tile is None
    )
    return tuple(renditions) + twins


def x265_colour_params(target: VideoRange, metadata: HdrMetadata) -> list[str]:
    """x265 VUI and SEI for an HDR rendition: BT.2020 primaries and matrix, the
    transfer, and the source's mastering display / content light level where it has
    them (HDR10 SEI)."""
    trc = {"PQ": "smpte2084", "HLG": "arib-std-b67"}[target]
    params = ["colorprim=bt2020", f"transfer={trc}", "colormatrix=bt2020nc", "range=limited"]
    if metadata.master_display:
        params.append(f"master-display={metadata.master_display}")
    if metadata.max_cll:
        params.append(f"max-cll={metadata.max_cll[0]},{metadata.max_cll[1]}")
    if metadata.master_display or metadata.max_cll:
        params.append("hdr10=1")
    return params


class ColourMapper:
    """Maps source frames to target ranges, each (frame, target) once: every rendition
    of a segment asks for the same source frame in turn, so the last frame's results
    are kept."""

    def __init__(self) -> None:
        self._frame: VideoFrame | None = None
        self._done: dict[VideoRange, VideoFrame] = {}
        self.source: SourceColour | None = None  # of the first frame seen

    def map(self, frame: VideoFrame, target: VideoRange) -> VideoFrame:
        if self.source is None:
            self.source = SourceColour.of(frame)
        if source_range(frame) == target:
            return frame
        if frame is not self._frame:
            self._frame, self._done = frame, {}
        if target not in self._done:
            self._done[target] = convert(frame, target)
        return self._done[target]
