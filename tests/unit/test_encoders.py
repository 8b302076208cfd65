"""The encoder seam: what opens here (probed once), the choice by `hardware` with one
log line on fallback, each encoder's options against FFmpeg's own option tables, and
renditions above a codec's levels refused by the encoder layer."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from media.encoders import (
    ENCODERS,
    Encoder,
    EncoderRegistry,
    EncoderSettings,
    EncoderUnavailableError,
    LibX264,
    LibX265,
    Nvenc,
    Probe,
    RenditionNotEncodableError,
    default_registry,
    open_probe,
)
from media.ladder import Rendition
from media.levels import av1_excess, av1_level, h264_excess, h264_level, hevc_excess, hevc_level
from media.transcode import SegmentTranscoder

SOFTWARE = {"libx264", "libx265", "libsvtav1"}
NVENC = {"h264_nvenc", "hevc_nvenc", "av1_nvenc"}
# No NVIDIA driver here, so no NVENC; on a GPU host NVENC may or may not exist (the
# H100 has none), so only the logic tests below run there.
NO_NVIDIA_DRIVER = not Path("/dev/nvidiactl").exists()

R1080 = Rendition("1080p", 1920, 1080, 8_000, fps=25)
R8K = Rendition("8K", 7680, 4320, 50_000, fps=30)
R20K = Rendition("20K", 20480, 11520, 100_000, fps=30)


def counting(calls: list[str], unavailable: set[str] | None = None) -> Probe:
    """A probe that records each call: the real one, or one that fails `unavailable`."""

    def probe(encoder: Encoder) -> str | None:
        calls.append(encoder.name)
        if unavailable is None:
            return open_probe(encoder)
        return "no device" if encoder.name in unavailable else None

    return probe


def test_software_opens_here_and_each_encoder_is_probed_once() -> None:
    calls: list[str] = []
    registry = EncoderRegistry(probe=counting(calls))
    available = registry.available()
    assert available == registry.available()
    assert sorted(calls) == sorted(e.name for e in ENCODERS)  # once each, cached
    assert {name for name, ok in available.items() if ok} >= SOFTWARE
    assert default_registry() is default_registry()  # one per process


@pytest.mark.skipif(not NO_NVIDIA_DRIVER, reason="an NVIDIA driver is present")
def test_nvenc_is_unavailable_here_and_require_says_why() -> None:
    registry = EncoderRegistry()
    assert not any(ok for name, ok in registry.available().items() if name in NVENC)
    with pytest.raises(EncoderUnavailableError, match="hardware='require'.*h264_nvenc"):
        registry.encoder_for(R1080, EncoderSettings(hardware="require"))
    assert registry.encoder_for(R1080, EncoderSettings(hardware="auto")).name == "libx264"


def test_auto_falls_back_to_software_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    registry = EncoderRegistry(probe=counting(calls, unavailable=NVENC))
    auto = EncoderSettings(hardware="auto")
    with caplog.at_level(logging.WARNING, logger="media.encoders.registry"):
        for r in (R1080, R8K, Rendition("720p", 1280, 720, 2_800)):
            assert registry.encoder_for(r, auto).name == "libx264"
        hevc = Rendition("4K", 3840, 2160, 25_000, codec="hevc")
        assert registry.encoder_for(hevc, auto).name == "libx265"
    assert [r.getMessage().split()[0] for r in caplog.records] == ["h264_nvenc", "hevc_nvenc"]
    assert "encoding h264 in software" in caplog.records[0].getMessage()
    with pytest.raises(EncoderUnavailableError, match="h264_nvenc: no device"):
        registry.encoder_for(R1080, EncoderSettings(hardware="require"))


def test_off_never_probes_hardware() -> None:
    calls: list[str] = []
    registry = EncoderRegistry(probe=counting(calls, unavailable=set()))
    assert registry.encoder_for(R1080, EncoderSettings()).name == "libx264"
    assert calls == ["libx264"]


def test_hardware_that_opens_is_preferred_within_its_limits() -> None:
    registry = EncoderRegistry(probe=counting([], unavailable=set()))
    auto, require = EncoderSettings(hardware="auto"), EncoderSettings(hardware="require")
    assert registry.encoder_for(R1080, auto).name == "h264_nvenc"
    # NVENC's H.264 stops at 4096 wide: auto goes to x264, require refuses.
    assert registry.encoder_for(R8K, auto).name == "libx264"
    with pytest.raises(RenditionNotEncodableError, match="h264_nvenc .* up to 4096x4096"):
        registry.encoder_for(R8K, require)
    hevc_8k = Rendition("8K", 7680, 4320, 50_000, codec="hevc", fps=30)
    assert registry.encoder_for(hevc_8k, require).name == "hevc_nvenc"


def test_a_rung_above_the_codec_levels_is_refused_by_the_encoder_layer() -> None:
    registry = default_registry()
    with pytest.raises(RenditionNotEncodableError, match=r"libx264 .*'20K'.*MaxFS 139,264"):
        registry.encoder_for(R20K, EncoderSettings())
    r20k_hevc = Rendition("20K", 20480, 11520, 100_000, codec="hevc", fps=30)
    with pytest.raises(RenditionNotEncodableError, match="HEVC level 6.2"):
        registry.encoder_for(r20k_hevc, EncoderSettings())
    too_fast = Rendition("1080p", 1920, 1080, 900_000, fps=30)
    with pytest.raises(RenditionNotEncodableError, match="MaxBR"):
        registry.encoder_for(too_fast, EncoderSettings())
    assert issubclass(RenditionNotEncodableError, ValueError)
    # The transcoder asks before it reads the segment: bad bytes are never looked at.
    with pytest.raises(RenditionNotEncodableError):
        SegmentTranscoder().transcode(b"not a segment", [R20K])


def test_x264_and_x265_options_set_level_gop_and_rates() -> None:
    settings = EncoderSettings(preset="fast", x264_params="bframes=2")
    assert LibX264().options(R1080, 50, settings) == {
        "preset": "fast",
        "profile": "high",
        "maxrate": "9600k",
        "bufsize": "16000k",
        "x264-params": "keyint=50:scenecut=0:level=4:bframes=2",
    }
    r4k = Rendition("4K", 3840, 2160, 25_000, codec="hevc", fps=25)
    x265 = LibX265().options(r4k, 50, settings)["x265-params"].split(":")
    assert {"keyint=50", "min-keyint=50", "scenecut=0", "level-idc=5", "high-tier=1"} <= set(x265)
    nvenc = Nvenc("hevc").options(r4k, 50, settings)
    assert (nvenc["level"], nvenc["tier"], nvenc["g"], nvenc["preset"]) == ("5", "high", "50", "p4")
    assert Nvenc("h264").options(R8K, 60, settings)["level"] == "6.0"  # NVENC has no bare "6"


@pytest.mark.parametrize("encoder", ENCODERS, ids=lambda e: e.name)
def test_options_are_known_to_ffmpeg(encoder: Encoder) -> None:
    """Every option exists for that encoder in this FFmpeg, with a valid choice where
    FFmpeg lists choices: checked without opening, so NVENC is covered here too."""
    supported = av.CodecContext.create(encoder.name, "w").supported_options
    known = {o.name: o for o in (*supported.generic, *supported.private)}
    for r in (R1080, Rendition("360p", 640, 360, 800, fps=30), R8K):
        if encoder.name == "h264_nvenc" and r is R8K:
            continue
        for key, value in encoder.options(r, 50, EncoderSettings()).items():
            assert key in known, f"{encoder.name} has no option {key!r}"
            choices = {c.name for c in known[key].choices}
            if choices and key in {o.name for o in supported.private}:
                assert value in choices, f"{encoder.name} {key}={value!r} not in {choices}"


def test_level_search_and_excess_agree() -> None:
    """`*_excess` names a limit exactly when `*_level` finds no level."""
    sizes = [(640, 360), (3840, 2160), (7680, 4320), (8192, 8192), (16384, 2160), (20480, 11520)]
    for (w, h), fps, kbps in itertools.product(sizes, (25, 60, 120), (960, 60_000, 900_000)):
        for level, excess in ((h264_level, h264_excess), (hevc_level, hevc_excess)):
            fits = excess(w, h, fps, kbps) is None
            if fits:
                level(w, h, fps, kbps)
            else:
                with pytest.raises(ValueError, match="exceeds every"):
                    level(w, h, fps, kbps)
        assert (av1_excess(w, h, fps, kbps) is None) == _fits(av1_level, w, h, fps, kbps)


def _fits(
    level: Callable[[int, int, float, int], object], w: int, h: int, fps: float, kbps: int
) -> bool:
    try:
        level(w, h, fps, kbps)
    except ValueError:
        return False
    return True


def test_av1_levels_from_annex_a() -> None:
    assert av1_level(1920, 1080, 30, 9_600) == ("4.0", False)
    assert av1_level(1920, 1080, 60, 9_600) == ("4.1", False)
    assert av1_level(3840, 2160, 30, 30_000) == ("5.0", False)
    assert av1_level(3840, 2160, 30, 60_000) == ("5.0", True)
    assert av1_level(7680, 4320, 30, 60_000) == ("6.0", False)
    assert av1_excess(20480, 11520, 30, 100_000) == (
        "picture size 235,929,600 > MaxPicSize 35,651,584 (AV1 level 6.3)"
    )
