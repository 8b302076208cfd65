"""Software encoders: x264 (H.264), x265 (HEVC) and SVT-AV1 (AV1).

They run anywhere FFmpeg was built with them, so they are the fallback for every
hardware encoder. Each sets the level the ladder computed, so the SPS says what the
master playlist's CODECS promises.
"""

from __future__ import annotations

from ..ladder import Rendition
from ..levels import h264_level, hevc_level
from .base import EncoderSettings, VideoCodec, check_levels, rate_options

__all__ = ["LibSvtAv1", "LibX264", "LibX265"]


class LibX264:
    """H.264 High profile."""

    name = "libx264"
    codec: VideoCodec = "h264"
    hardware = False

    def check(self, rendition: Rendition) -> None:
        check_levels(self, rendition)

    def options(
        self, rendition: Rendition, keyint: int, settings: EncoderSettings
    ) -> dict[str, str]:
        r = rendition
        level = h264_level(r.width, r.height, r.fps, r.maxrate_kbps)
        params = [f"keyint={keyint}", "scenecut=0", f"level={level}"]
        if settings.x264_params:
            params.append(settings.x264_params)
        return {
            "preset": settings.preset,
            "profile": "high",
            **rate_options(r),
            "x264-params": ":".join(params),
        }


class LibX265:
    """HEVC Main profile, Main or High tier as the level tables need."""

    name = "libx265"
    codec: VideoCodec = "hevc"
    hardware = False

    def check(self, rendition: Rendition) -> None:
        check_levels(self, rendition)

    def options(
        self, rendition: Rendition, keyint: int, settings: EncoderSettings
    ) -> dict[str, str]:
        r = rendition
        level, high_tier = hevc_level(r.width, r.height, r.fps, r.maxrate_kbps)
        params = [
            f"keyint={keyint}",
            f"min-keyint={keyint}",
            "scenecut=0",
            f"level-idc={level}",
            "high-tier=1" if high_tier else "no-high-tier=1",
            f"log-level={settings.x265_log_level}",
        ]
        if settings.threads:
            params += [f"pools={settings.threads}", f"frame-threads={settings.threads}"]
        return {
            "preset": settings.preset,
            # Main10 for HDR renditions (media.hdr adds their colour VUI and SEI).
            "profile": "main" if r.video_range == "SDR" else "main10",
            **rate_options(r),
            "x265-params": ":".join(params),
        }


# x264 preset names on SVT-AV1's 0 (slowest) .. 13 (fastest) scale, stopping at 10:
# SVT warns that presets above 10 are for tooling and may show visual artifacts.
_SVT_PRESETS = {
    "ultrafast": 10,
    "superfast": 9,
    "veryfast": 8,
    "faster": 7,
    "fast": 6,
    "medium": 5,
    "slow": 4,
    "slower": 3,
    "veryslow": 2,
    "placebo": 1,
}


class LibSvtAv1:
    """AV1 Main profile. Known to the registry, used by no rung yet (see
    `base.VideoCodec`); SVT-AV1 picks the level itself from size and rate."""

    name = "libsvtav1"
    codec: VideoCodec = "av1"
    hardware = False

    def check(self, rendition: Rendition) -> None:
        check_levels(self, rendition)

    def options(
        self, rendition: Rendition, keyint: int, settings: EncoderSettings
    ) -> dict[str, str]:
        params = ["scd=0"]
        if settings.threads:
            params.append(f"lp={settings.threads}")
        # Average rate only (the stream's `bit_rate`): SVT-AV1 refuses a VBV peak
        # ("maxrate") outside CRF mode.
        return {
            "preset": str(_SVT_PRESETS.get(settings.preset, 8)),
            "g": str(keyint),
            "svtav1-params": ":".join(params),
        }
