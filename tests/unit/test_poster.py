"""The poster thumbnail: a real MPEG-TS segment in, a JPEG of the first frame out."""

from __future__ import annotations

import io

import av
import pytest

from media.poster import PosterError, poster_jpeg
from tests.utils.media import frame_index, synthetic


def _ts(frames: int, size: tuple[int, int] = (320, 240)) -> bytes:
    return synthetic(fmt="mpegts", frames=frames, gop=frames, size=size, audio=False)


def test_poster_is_the_first_frame_as_a_small_jpeg() -> None:
    jpeg = poster_jpeg(_ts(10, (640, 360)), width=320)
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"  # SOI ... EOI
    with av.open(io.BytesIO(jpeg)) as c:
        frame = next(c.decode(video=0))
    assert (frame.width, frame.height) == (320, 180)  # aspect kept, even height
    assert frame_index(frame) == 0  # the segment's first picture, not a later one


def test_a_segment_without_video_is_refused() -> None:
    with pytest.raises(PosterError):
        poster_jpeg(b"\x47" + b"\x00" * 187)
