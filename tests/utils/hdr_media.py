"""HDR sources made in the test: tiny 10-bit HEVC with PQ/HLG and BT.2020 tags (and
HDR10 mastering display / content light level SEI), and an SDR H.264 one."""

from __future__ import annotations

import io
from fractions import Fraction
from typing import cast

import av
import numpy as np

from media.colour import pq_inverse_eotf

__all__ = ["FPS", "H", "MASTER", "PATCHES_NITS", "W", "hdr_source", "pq_patches", "sdr_source"]

MASTER = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
W, H, FPS = 320, 180, 10
# Three neutral patches, cd/m²: 18 % grey, reference white (BT.2408), a highlight.
PATCHES_NITS = (26.0, 203.0, 1000.0)


def pq_patches() -> np.ndarray:
    """A 10-bit limited-range yuv420p10le image (H*3/2, W) of the three PQ patches."""
    codes = pq_inverse_eotf(np.array(PATCHES_NITS))
    y = np.zeros((H, W), np.uint16)
    for i, code in enumerate(codes):
        y[:, i * W // 3 : (i + 1) * W // 3] = round(64 + 876 * code)
    chroma = np.full((H // 2, W // 2), 512, np.uint16)
    return np.concatenate([y.ravel(), chroma.ravel(), chroma.ravel()]).reshape(H * 3 // 2, W)


def hdr_source(
    transfer: str = "smpte2084", frames: int = 6, metadata: bool = True, gop: int = 0
) -> bytes:
    """An FLV of 10-bit HEVC with BT.2020 tags (and HDR10 SEI); one GOP unless `gop`."""
    gop = gop or frames
    params = (
        f"keyint={gop}:min-keyint={gop}:scenecut=0:log-level=error:pools=1:"
        f"frame-threads=1:open-gop=0:colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc"
    )
    if metadata:
        params += f":master-display={MASTER}:max-cll=1000,400:hdr10=1"
    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as out:
        vs = cast(
            av.VideoStream,
            out.add_stream(
                "libx265", rate=FPS, options={"x265-params": params, "preset": "ultrafast"}
            ),
        )
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p10le"
        image = pq_patches()
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(image, format="yuv420p10le")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return buf.getvalue()


def sdr_source(frames: int = 6) -> bytes:
    """An FLV of 8-bit H.264: white top half (235), grey bottom half."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as out:
        vs = cast(
            av.VideoStream, out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        )
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        y = np.full((H, W), 235, np.uint8)
        y[H // 2 :] = 110
        c = np.full((H // 2, W // 2), 128, np.uint8)
        image = np.concatenate([y.ravel(), c.ravel(), c.ravel()]).reshape(H * 3 // 2, W)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return buf.getvalue()
