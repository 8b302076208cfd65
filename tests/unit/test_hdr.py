"""HDR renditions (media.hdr, media.mux): real libx265/x264 through PyAV on tiny sources.

An HDR10 source keeps its transfer, primaries and mastering metadata in 10-bit HEVC
fMP4; an SDR source with enableHDR becomes HLG; without enableHDR an HDR source is
tone mapped to SDR so that reference white is white, not the washed-out grey of the
PQ code values read as SDR.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Any, cast

import av
import numpy as np
import pytest

from media import hdr
from media.ladder import Rendition
from media.segmenter import Segmenter, SourceSegment
from media.transcode import EncoderSettings, RenditionSegment, SegmentTranscoder
from tests.utils.hdr_media import FPS, MASTER, H, W, hdr_source, pq_patches, sdr_source


def segment_of(flv: bytes) -> SourceSegment:
    [segment] = list(Segmenter(io.BytesIO(flv), format="flv"))
    return segment


def transcode(
    segment: SourceSegment, renditions: tuple[Rendition, ...]
) -> dict[str, RenditionSegment]:
    transcoder = SegmentTranscoder(EncoderSettings(preset="ultrafast"))
    return transcoder.transcode(segment.data, renditions, expected_frames=segment.frames)


def decode(data: bytes) -> tuple[list[av.VideoFrame], Any]:
    with av.open(io.BytesIO(data)) as c:
        frames = list(c.decode(video=0))
        return frames, c.streams.video[0].codec_context.name


def side_data(frame: av.VideoFrame) -> set[str]:
    return {sd.type.name for sd in cast(Any, frame.side_data).keys()}  # noqa: SIM118


RUNG = Rendition("180p", W, H, 300, fps=FPS)


def test_an_hdr10_source_keeps_pq_bt2020_and_its_mastering_metadata_in_hevc_main10() -> None:
    segment = segment_of(hdr_source())
    colour = hdr.probe_colour(segment.data)
    assert colour.range == "PQ" and colour.bit_depth == 10
    assert colour.metadata == hdr.HdrMetadata(MASTER, (1000, 400))
    renditions = hdr.hdr_renditions((RUNG,), colour.range)
    assert [(r.name, r.codec, r.video_range) for r in renditions] == [
        ("180p", "h264", "SDR"),
        ("180p-hdr", "hevc", "PQ"),
    ]
    out = transcode(segment, renditions)["180p-hdr"]
    assert out.init is not None and out.data[4:8] == b"styp"
    assert out.codecs.startswith("hvc1.2.4.L")  # Main10, read from the bitstream
    # The plan names it before the first segment (a master listed early): the same string.
    assert out.codecs.split(",")[0] == renditions[1].video_codec_string
    frames, codec = decode(out.init + out.data)
    assert codec == "hevc" and len(frames) == segment.frames == out.frames
    first = frames[0]
    assert first.format.name == "yuv420p10le"
    assert (first.color_trc, first.color_primaries, first.colorspace) == (16, 9, 9)
    assert {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"} <= side_data(first)
    assert hdr.HdrMetadata.from_frame(first) == colour.metadata
    # PQ passthrough: the 10-bit code values survive (within coding error).
    y = first.to_ndarray()[:H]
    reference = pq_patches()[:H]
    assert np.abs(y[:, 20::50].astype(int) - reference[:, 20::50]).mean() < 6


def test_without_enable_hdr_an_hdr_source_is_tone_mapped_to_bt709_sdr() -> None:
    segment = segment_of(hdr_source(frames=4))
    out = transcode(segment, (RUNG,))["180p"]
    assert out.init is None  # MPEG-TS, H.264
    frames, codec = decode(out.data)
    assert codec == "h264" and len(frames) == 4
    assert (frames[0].color_trc, frames[0].color_primaries) == (1, 1)
    y = frames[0].to_ndarray()[:H]
    grey, white, highlight = (int(y[H // 2, (2 * i + 1) * W // 6]) for i in range(3))
    # PQ codes read as SDR would give about 99 / 143 / 180: a grey "white".
    assert 70 < grey < 110, grey
    assert white > 200, white  # reference white is (nearly) SDR white
    assert highlight >= white and highlight <= 235


def test_an_sdr_source_with_enable_hdr_gets_hlg_through_the_bt2408_mapping() -> None:
    segment = segment_of(sdr_source(frames=4))
    assert hdr.probe_colour(segment.data).range == "SDR"
    assert hdr.probe_colour(b"not a segment" * 20).range == "SDR"  # never raises
    renditions = hdr.hdr_renditions((RUNG,), "SDR")
    out = transcode(segment, renditions)
    hlg = out["180p-hdr"]
    assert hlg.init is not None
    frames, _ = decode(hlg.init + hlg.data)
    assert len(frames) == 4 and frames[0].format.name == "yuv420p10le"
    assert (frames[0].color_trc, frames[0].color_primaries, frames[0].colorspace) == (18, 9, 9)
    y = frames[0].to_ndarray()[:H]
    # SDR 100 % (235) lands at HLG 75 %: 64 + 0.75 * 876 = 721.
    assert abs(int(y[H // 4, W // 2]) - 721) <= 8
    assert 300 < int(y[3 * H // 4, W // 2]) < 721
    # The SDR rung of the same stream is untouched SDR.
    sdr, _ = decode(out["180p"].data)
    assert abs(int(sdr[0].to_ndarray()[H // 4, W // 2]) - 235) <= 3


def test_an_hlg_source_stays_hlg() -> None:
    segment = segment_of(hdr_source("arib-std-b67", frames=4, metadata=False))
    renditions = hdr.hdr_renditions((RUNG,), hdr.probe_colour(segment.data).range)
    assert renditions[1].video_range == "HLG"
    out = transcode(segment, renditions)["180p-hdr"]
    assert out.init is not None
    frames, _ = decode(out.init + out.data)
    assert frames[0].color_trc == 18 and len(frames) == 4


@pytest.mark.parametrize("target", ["SDR", "HLG", "PQ"])
def test_the_mapping_keeps_size_and_timestamps(target: str) -> None:
    frame = av.VideoFrame.from_ndarray(pq_patches(), format="yuv420p10le")
    frame.color_trc, frame.color_primaries, frame.colorspace = 16, 9, 9
    frame.pts, frame.time_base = 1234, Fraction(1, 90_000)
    out = hdr.ColourMapper().map(frame, cast(hdr.VideoRange, target))
    assert (out.width, out.height, out.pts) == (W, H, 1234)
    assert hdr.source_range(out) == target
