"""NVIDIA NVENC encoders: `h264_nvenc`, `hevc_nvenc`, `av1_nvenc`.

They open only where the driver and an NVENC-capable GPU are present (data-centre
parts such as the H100 have no NVENC), so the registry probes them before use. Besides
the codec's levels, NVENC has a maximum frame size per codec; a rendition above it is
refused, and in `auto` mode goes to the software encoder instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ladder import Rendition
from ..levels import av1_level, h264_level, hevc_level
from .base import EncoderSettings, VideoCodec, check_levels, rate_options, refuse

__all__ = ["NVENC_ENCODERS", "Nvenc"]

# x264 preset names on NVENC's p1 (fastest) .. p7 (slowest) scale.
_PRESETS = {
    "ultrafast": "p1",
    "superfast": "p2",
    "veryfast": "p3",
    "faster": "p4",
    "fast": "p4",
    "medium": "p5",
    "slow": "p6",
    "slower": "p7",
    "veryslow": "p7",
    "placebo": "p7",
}

# Largest frame NVENC encodes (Video Codec SDK support matrix, Turing and later):
# H.264 stops at 4096x4096, HEVC and AV1 at 8192x8192.
_MAX_SIZE: dict[VideoCodec, int] = {"h264": 4096, "hevc": 8192, "av1": 8192}


@dataclass(frozen=True, slots=True)
class Nvenc:
    """One NVENC encoder. AV1 is known here but used by no rung yet (see
    `base.VideoCodec`)."""

    codec: VideoCodec

    @property
    def name(self) -> str:
        return f"{self.codec}_nvenc"

    @property
    def hardware(self) -> bool:
        return True

    def check(self, rendition: Rendition) -> None:
        check_levels(self, rendition)
        if rendition.video_range != "SDR":  # 10-bit + HDR SEI: libx265 (media.hdr)
            refuse(self, rendition, "HDR renditions are encoded in software")
        limit = _MAX_SIZE[self.codec]
        if max(rendition.width, rendition.height) > limit:
            refuse(self, rendition, f"NVENC encodes frames up to {limit}x{limit}")

    def options(
        self, rendition: Rendition, keyint: int, settings: EncoderSettings
    ) -> dict[str, str]:
        """VBR at the rendition's rates; `forced-idr` and `strict_gop` keep the one
        closed GOP per segment that x264's `keyint`/`scenecut=0` give."""
        return {
            "preset": _PRESETS.get(settings.preset, "p3"),
            "tune": "hq",
            **self._profile_level(rendition),
            "rc": "vbr",
            **rate_options(rendition),
            "g": str(keyint),
            "no-scenecut": "1",
            "forced-idr": "1",
            "strict_gop": "1",
        }

    def _profile_level(self, r: Rendition) -> dict[str, str]:
        if self.codec == "h264":
            level = h264_level(r.width, r.height, r.fps, r.maxrate_kbps)
            # NVENC names level 6 "6.0" (and accepts no bare "6").
            return {"profile": "high", "level": level if "." in level else f"{level}.0"}
        if self.codec == "hevc":
            level, high = hevc_level(r.width, r.height, r.fps, r.maxrate_kbps)
            return {"profile": "main", "level": level, "tier": "high" if high else "main"}
        level, high = av1_level(r.width, r.height, r.fps, r.maxrate_kbps)
        return {"level": level, "tier": "1" if high else "0"}


NVENC_ENCODERS: tuple[Nvenc, ...] = (Nvenc("h264"), Nvenc("hevc"), Nvenc("av1"))
