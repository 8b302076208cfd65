"""A rendition: one output variant of a stream (a ladder rung fitted to the source, or a
tile), and the codec parameters and HLS attributes that follow from it. Which
renditions a stream gets is `media.ladder`'s and `media.tier_plan`'s.

Invariants:
- A rendition knows its own frame rate, level and RFC 6381 codec string, so the
  transcoder (which sets the encoder's level) and the master playlist (which
  advertises it) cannot disagree.
- Its declared BANDWIDTH is an upper bound of what its segments carry: the VBV peak
  (`PEAK_OVER_AVERAGE`), audio and MPEG-TS overhead included; a tile carries no audio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .levels import h264_level, hevc_level
from .tiles import Tile

__all__ = ["PEAK_OVER_AVERAGE", "TS_OVERHEAD", "Codec", "Rendition", "lowest_rung"]

Codec = Literal["h264", "hevc"]

# Peak (VBV max) rate over the average rate. Live ABR encoders commonly cap the peak
# at 110-150 % of the average; the playlist's BANDWIDTH is derived from it.
PEAK_OVER_AVERAGE = 1.2
# MPEG-TS packetisation overhead (PES headers, PAT/PMT, adaptation fields): ~5 %
# for streams in the Mbps range, more for tiny ones, so the declared BANDWIDTH is
# an upper bound rather than an average.
TS_OVERHEAD = 1.08


@dataclass(frozen=True, slots=True)
class Rendition:
    """One output variant. `fps` is the source's rate: renditions never change it."""

    name: str
    width: int
    height: int
    video_kbps: int
    audio_kbps: int = 128
    codec: Codec = "h264"
    fps: float = 30.0
    needs_upscale: bool = False
    upscale_passes: int = 0  # learned x2 passes (0: not upscaled by the network)
    tile: Tile | None = None  # set: one tile of a tiled frame (20K)
    # HLS VIDEO-RANGE: "SDR", or "PQ"/"HLG" for an HDR rendition (HEVC Main10, fMP4;
    # media.hdr). A str, not media.hdr.VideoRange: hdr imports this module (via the ladder).
    video_range: str = "SDR"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Rendition:
        """A rendition as stored in `stream_renditions` (sql/0003's and 0010's columns)."""
        tile = None
        if row.get("tile_row") is not None:
            tile = Tile(
                row["tile_row"],
                row["tile_col"],
                row["tile_x"],
                row["tile_y"],
                row["width"],
                row["height"],
                row["frame_width"],
                row["frame_height"],
            )
        return cls(
            name=row["name"],
            width=row["width"],
            height=row["height"],
            video_kbps=row["video_kbps"],
            audio_kbps=row["audio_kbps"],
            codec=row["video_codec"],
            fps=row["frame_rate"],
            needs_upscale=row["needs_upscale"],
            upscale_passes=row.get("upscale_passes") or 0,
            tile=tile,
            video_range=row.get("video_range") or "SDR",  # sql/0011
        )

    @property
    def maxrate_kbps(self) -> int:
        """The encoder's VBV peak rate."""
        return int(self.video_kbps * PEAK_OVER_AVERAGE)

    @property
    def bandwidth(self) -> int:
        """HLS BANDWIDTH (peak bits/s of a segment, audio and TS overhead included)."""
        return int((self.maxrate_kbps + self._audio_kbps) * 1000 * TS_OVERHEAD)

    @property
    def average_bandwidth(self) -> int:
        """HLS AVERAGE-BANDWIDTH in bits/s."""
        return int((self.video_kbps + self._audio_kbps) * 1000 * TS_OVERHEAD)

    @property
    def has_audio(self) -> bool:
        """Whether its segments carry the stream's audio: every rendition but a tile (the
        ladder beside the tiles carries it once, not 25 times, and the DASH players that
        compose tiles take one track per CMAF file)."""
        return self.tile is None

    @property
    def _audio_kbps(self) -> int:
        return self.audio_kbps if self.has_audio else 0

    @property
    def level(self) -> str:
        """The lowest level of the codec that admits this size, rate and bitrate."""
        if self.codec == "hevc":
            return hevc_level(self.width, self.height, self.fps, self.maxrate_kbps)[0]
        return h264_level(self.width, self.height, self.fps, self.maxrate_kbps)

    @property
    def video_codec_string(self) -> str:
        """RFC 6381 string of what the transcoder emits for this rendition.

        H.264: High profile (profile_idc 100, no constraint flags) at `level`.
        HEVC: as x265 writes it, progressive + frame-only constraint flags ("90"), Main
        or High tier; Main profile with compatibility flags 1 and 2 ("1.6"), or Main10
        for an HDR rendition (`media.encoders.software`) with flag 2 ("2.4"), so a
        master listed before the rung's first segment already names the right profile.
        """
        if self.codec == "hevc":
            level, high_tier = hevc_level(self.width, self.height, self.fps, self.maxrate_kbps)
            level_idc = round(float(level) * 30)
            profile = "1.6" if self.video_range == "SDR" else "2.4"
            return f"hvc1.{profile}.{'H' if high_tier else 'L'}{level_idc}.90"
        level_idc = round(float(self.level) * 10)
        return f"avc1.6400{level_idc:02x}"

    @property
    def codecs(self) -> str:
        """The HLS CODECS attribute: video and AAC-LC audio (video alone for a tile)."""
        return f"{self.video_codec_string},mp4a.40.2" if self.has_audio else self.video_codec_string


def lowest_rung(ladder: Sequence[Rendition]) -> Rendition | None:
    """The rung every player can fall back to, which backpressure never sheds and which
    is published first: the last SDR rung that is not a tile (ladder order is highest
    first; enableHDR's HEVC twins come after the SDR rungs and are not playable
    everywhere); the last non-tile rung if none is SDR; None without rungs."""
    rungs = [r for r in ladder if r.tile is None]
    sdr = [r for r in rungs if r.video_range == "SDR"]
    return (sdr or rungs)[-1] if rungs else None
