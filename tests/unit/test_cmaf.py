"""media.cmaf on real fMP4 from PyAV's mp4 muxer: boxes, the init/media split, tfdt."""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from typing import cast

import av
import numpy as np
import pytest

from media import cmaf

TB = Fraction(1, 90_000)


def _segment(start: int, frames: int) -> cmaf.Fmp4Segment:
    """`frames` H.264 frames at 10 fps starting at `start` (90 kHz), one fragment."""
    out = cmaf.FragmentedOutput()
    vs = cast(
        av.VideoStream,
        out.container.add_stream(
            "libx264", rate=10, options={"preset": "ultrafast", "x264-params": f"keyint={frames}"}
        ),
    )
    vs.width, vs.height, vs.pix_fmt, vs.time_base = 64, 64, "yuv420p", TB
    vs.codec_context.time_base = TB
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 20 * i, np.uint8), format="rgb24")
        frame.pts, frame.time_base = start + i * 9000, TB
        for p in vs.encode(frame):
            out.mux(p)
    for p in vs.encode(None):
        out.mux(p)
    return out.finish()


def test_split_gives_a_stable_init_and_media_on_the_stream_timeline() -> None:
    a, b = _segment(900_000, 5), _segment(945_000, 3)
    assert a.init == b.init  # same encoder parameters, same init
    assert [k for k, _, _ in cmaf.iter_boxes(a.init)] == [b"ftyp", b"moov"]
    assert [k for k, _, _ in cmaf.iter_boxes(a.media)] == [b"styp", b"moof", b"mdat"]
    assert cmaf.track_timescales(a.init) == {1: 90_000}
    assert cmaf.base_decode_times(a.media) == [(1, 900_000)]
    assert cmaf.base_decode_times(b.media) == [(1, 945_000)]
    with av.open(io.BytesIO(a.init + a.media + b.media)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    assert pts == [900_000 + 9000 * i for i in range(8)]


def test_shift_and_bad_boxes() -> None:
    seg = _segment(0, 2)
    moved = cmaf.shift_decode_times(seg.media, {1: 1 << 33})
    assert len(moved) == len(seg.media)
    assert cmaf.base_decode_times(moved) == [(1, 1 << 33)]
    with pytest.raises(ValueError, match="bad size"):
        list(cmaf.iter_boxes(struct.pack(">I4s", 100, b"moof")))
    with pytest.raises(ValueError, match="not a fragmented MP4"):
        cmaf.split(seg.init)
