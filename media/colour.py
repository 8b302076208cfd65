"""Frames between SDR, PQ and HLG: the pixel math under `media.hdr`.

    VideoRange, source_range(frame)   a frame's range, from its transfer (`color_trc`)
    convert(frame, target)            the frame in the target range (numpy)
    colour_tags(target)               FFmpeg's primaries / transfer / matrix values

PyAV's FFmpeg has no `zscale` (checked with `av.filter.filters_available`), and its
`colorspace` filter knows neither PQ nor HLG, so the mapping is numpy on float32
frames at the source size, once per source frame and target range, before each
rendition is scaled by libswscale (Y'CbCr to Y'CbCr: no matrix, no transfer applied).

The mappings all go through one intermediate: linear RGB in BT.2020 primaries,
relative to *reference white* (1.0 = SDR 100 % = HDR reference white, ITU-R BT.2408):

- SDR in (BT.709): inverse BT.709 OETF (scene light), BT.709 -> BT.2020 primaries
  (BT.2087 matrix). SDR 100 % is 1.0.
- PQ in (SMPTE ST 2084): PQ EOTF to cd/m², divided by 203 cd/m² (BT.2408 reference white).
- HLG in (ARIB STD-B67): inverse HLG OETF (scene light), divided by 0.2647, the scene
  light HLG codes at 75 % (BT.2408: reference white at 75 % HLG).
- HLG out: times 0.2647, HLG OETF. With an SDR source this is BT.2408's scene-light
  SDR->HLG mapping: SDR 100 % lands at HLG 75 %, the SDR colours inside BT.2020.
- PQ out: times 203 cd/m², inverse PQ EOTF.
- SDR out (tone mapping, for the H.264 rungs of an HDR source without enableHDR):
  BT.2020 -> BT.709 primaries, then a soft shoulder on max(R, G, B): identity up to
  `SHOULDER_KNEE` (0.75 of SDR white), above it `k + (1-k)(1 - exp(-(x-k)/(1-k)))`,
  continuous in value and slope and reaching SDR peak only asymptotically, each pixel's
  RGB scaled by the same ratio (hue kept); then the BT.709 OETF. Reference white lands
  at 91 % linear (96 % signal), 18 % grey stays 18 %, a 1000 cd/m² highlight at ~100 %.
  Reading PQ code values as if they were SDR ("washed out") would put reference white
  at 58 % and every highlight below 76 %.

Invariants:
- `convert` always maps (even a frame already in the target range: `hdr.ColourMapper`
  is what passes those through untouched); transfer curves are `LUT_SIZE`-entry tables.
- Output frames are yuv420p (SDR, BT.709, limited range) or yuv420p10le (PQ/HLG,
  BT.2020 non-constant luminance, limited range), tagged as such, with the source's pts.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Literal

import numpy as np
from av.video.frame import VideoFrame

__all__ = [
    "HLG_REFERENCE",
    "PQ_REFERENCE_NITS",
    "RANGE_LIMITED",
    "SHOULDER_KNEE",
    "VideoRange",
    "colour_tags",
    "convert",
    "pq_inverse_eotf",
    "source_range",
]

VideoRange = Literal["SDR", "PQ", "HLG"]

# FFmpeg's enum values (AVColorTransferCharacteristic, AVColorPrimaries, AVColorSpace,
# AVColorRange), as PyAV's VideoFrame and codec context expose them.
TRC_BT709, TRC_PQ, TRC_HLG = 1, 16, 18
PRI_BT709, PRI_BT2020 = 1, 9
SPC_BT709, SPC_BT2020_NCL = 1, 9
RANGE_LIMITED, RANGE_FULL = 1, 2

PQ_REFERENCE_NITS = 203.0  # BT.2408 HDR reference white
SHOULDER_KNEE = 0.75

# ST 2084 constants.
_M1, _M2 = 2610 / 16384, 2523 / 4096 * 128
_C1, _C2, _C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
# ARIB STD-B67 constants.
_A = 0.17883277
_B = 1 - 4 * _A
_C = 0.5 - _A * np.log(4 * _A)


def _hlg_inverse_oetf(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.asarray(np.where(v <= 0.5, v * v / 3, (np.exp((v - _C) / _A) + _B) / 12))


def _hlg_oetf(e: np.ndarray) -> np.ndarray:
    e = np.clip(e, 0.0, 1.0)
    return np.asarray(
        np.where(e <= 1 / 12, np.sqrt(3 * e), _A * np.log(np.maximum(12 * e - _B, 1e-6)) + _C)
    )


HLG_REFERENCE = float(_hlg_inverse_oetf(np.array(0.75)))  # 0.2647: HLG 75 %


def _pq_eotf(v: np.ndarray) -> np.ndarray:
    """PQ signal (0..1) to cd/m²."""
    p = np.power(np.clip(v, 0.0, 1.0), 1 / _M2)
    return np.asarray(10000 * np.power(np.maximum(p - _C1, 0) / (_C2 - _C3 * p), 1 / _M1))


def pq_inverse_eotf(nits: np.ndarray) -> np.ndarray:
    y = np.power(np.clip(nits / 10000, 0.0, 1.0), _M1)
    return np.asarray(np.power((_C1 + _C2 * y) / (1 + _C3 * y), _M2))


def _bt709_oetf(e: np.ndarray) -> np.ndarray:
    e = np.clip(e, 0.0, 1.0)
    return np.asarray(np.where(e < 0.018, 4.5 * e, 1.099 * np.power(e, 0.45) - 0.099))


def _bt709_inverse_oetf(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.asarray(np.where(v < 0.081, v / 4.5, np.power((v + 0.099) / 1.099, 1 / 0.45)))


# Linear-light primaries conversion (ITU-R BT.2087) and its inverse.
_709_TO_2020 = np.array(
    [[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]],
    np.float32,
)
_2020_TO_709 = np.linalg.inv(_709_TO_2020).astype(np.float32)
# Y'CbCr luma coefficients (Kr, Kb).
_KRB = {SPC_BT709: (0.2126, 0.0722), SPC_BT2020_NCL: (0.2627, 0.0593), 5: (0.299, 0.114)}
_KRB[6] = _KRB[5]  # SMPTE 170M = BT.601


def source_range(frame: VideoFrame) -> VideoRange:
    """PQ or HLG by the frame's transfer characteristics; anything else is SDR."""
    return {TRC_PQ: "PQ", TRC_HLG: "HLG"}.get(int(frame.color_trc or 0), "SDR")  # type: ignore[return-value]


def colour_tags(target: VideoRange) -> tuple[int, int, int]:
    """(primaries, transfer, matrix) enum values of a target range."""
    if target == "SDR":
        return PRI_BT709, TRC_BT709, SPC_BT709
    return PRI_BT2020, TRC_PQ if target == "PQ" else TRC_HLG, SPC_BT2020_NCL


class _Lut:
    """A transfer function as a table: `LUT_SIZE` entries over its input, indexed
    linearly (`sqrt=False`: inputs are code values, 10-bit at most) or by the square
    root (`sqrt=True`: linear light, whose dark end needs the finer steps). Indexing a
    table costs a fraction of evaluating pow/exp/log on every pixel."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], top: float, sqrt: bool) -> None:
        steps = np.linspace(0.0, 1.0, LUT_SIZE)
        self.top, self.sqrt = top, sqrt
        self.table = fn((steps * steps if sqrt else steps) * top).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.clip(x * (1 / self.top), 0.0, 1.0)
        if self.sqrt:
            x = np.sqrt(x)
        return np.asarray(self.table[np.rint(x * (LUT_SIZE - 1)).astype(np.intp)])


LUT_SIZE = 4096
_IN = {
    "PQ": _Lut(lambda v: _pq_eotf(v) / PQ_REFERENCE_NITS, 1.0, sqrt=False),
    "HLG": _Lut(lambda v: _hlg_inverse_oetf(v) / HLG_REFERENCE, 1.0, sqrt=False),
    "SDR": _Lut(_bt709_inverse_oetf, 1.0, sqrt=False),
}
# Out of reference-relative linear light: HLG codes up to 1 / HLG_REFERENCE (3.78x
# reference white), PQ up to 10,000 cd/m².
_OUT = {
    "SDR": _Lut(_bt709_oetf, 1.0, sqrt=True),
    "HLG": _Lut(lambda x: _hlg_oetf(x * HLG_REFERENCE), 1 / HLG_REFERENCE, sqrt=True),
    "PQ": _Lut(
        lambda x: pq_inverse_eotf(x * PQ_REFERENCE_NITS), 10_000 / PQ_REFERENCE_NITS, sqrt=True
    ),
}


def convert(frame: VideoFrame, target: VideoRange) -> VideoFrame:
    """One frame in `target`'s range (see the module docstring for the mapping)."""
    if frame.width % 2 or frame.height % 2:  # 4:2:0 blocks: an even size (renditions are)
        frame = frame.reformat(
            width=max(2, frame.width // 2 * 2), height=max(2, frame.height // 2 * 2)
        )
    rgb = _to_reference_linear(frame)
    if target == "SDR":
        rgb = _shoulder(_matmul(rgb, _2020_TO_709))
    matrix, depth = (SPC_BT709, 8) if target == "SDR" else (SPC_BT2020_NCL, 10)
    out = _from_rgb(_OUT[target](rgb), matrix, depth, frame)
    out.color_primaries, out.color_trc, out.colorspace = colour_tags(target)
    out.color_range = RANGE_LIMITED
    return out


def _matmul(rgb: np.ndarray, m: np.ndarray) -> np.ndarray:
    return np.asarray(np.maximum(rgb @ m.T, 0.0))


def _shoulder(rgb: np.ndarray) -> np.ndarray:
    """Soft shoulder on max(R, G, B) (see the module docstring), hue-preserving."""
    rgb *= _SHOULDER_RATIO(rgb.max(axis=-1))[..., None]
    return np.asarray(np.minimum(rgb, 1.0, out=rgb))


def _shoulder_ratio(peak: np.ndarray) -> np.ndarray:
    """shoulder(peak) / peak: what every channel of a pixel is scaled by."""
    k = SHOULDER_KNEE
    mapped = np.where(peak > k, k + (1 - k) * (1 - np.exp(-(peak - k) / (1 - k))), peak)
    return np.asarray(mapped / np.maximum(peak, 1e-6))


# Over everything PQ can code, in units of reference white.
_SHOULDER_RATIO = _Lut(_shoulder_ratio, 10_000 / PQ_REFERENCE_NITS, sqrt=True)


def _to_reference_linear(frame: VideoFrame) -> np.ndarray:
    """Linear BT.2020 RGB relative to reference white, (H, W, 3) float32."""
    kind = source_range(frame)
    linear = _IN[kind](_to_rgb(frame))
    if kind != "SDR" or int(frame.color_primaries or 0) == PRI_BT2020:
        return linear
    return _matmul(linear, _709_TO_2020)


def _planes(frame: VideoFrame) -> tuple[list[np.ndarray], int]:
    """Y, U, V as arrays (4:2:0) and the bit depth, converting other layouts first."""
    if frame.format.name not in ("yuv420p", "yuvj420p", "yuv420p10le"):
        frame = frame.reformat(format="yuv420p10le")
    depth = 10 if frame.format.name == "yuv420p10le" else 8
    dtype = np.uint16 if depth == 10 else np.uint8
    out = []
    for p in frame.planes:
        a = np.frombuffer(memoryview(p), dtype).reshape(p.height, p.line_size // dtype().itemsize)
        out.append(a[:, : p.width])
    return out, depth


def _to_rgb(frame: VideoFrame) -> np.ndarray:
    """Non-linear R'G'B' (0..1) at full resolution (chroma repeated), float32."""
    (y, u, v), depth = _planes(frame)
    u, v = u[: y.shape[0] // 2, : y.shape[1] // 2], v[: y.shape[0] // 2, : y.shape[1] // 2]
    full = int(frame.color_range or 0) == RANGE_FULL or frame.format.name == "yuvj420p"
    scale = (1 << depth) - 1 if full else 219 << (depth - 8)
    y0 = 0 if full else 16 << (depth - 8)
    cscale = (1 << depth) - 1 if full else 224 << (depth - 8)
    mid = 1 << (depth - 1)
    h, w = y.shape
    yf = ((y.astype(np.float32) - y0) * (1 / scale)).reshape(h // 2, 2, w // 2, 2)
    uf = (u.astype(np.float32) - mid) * (1 / cscale)
    vf = (v.astype(np.float32) - mid) * (1 / cscale)
    default = SPC_BT2020_NCL if source_range(frame) != "SDR" else SPC_BT709
    kr, kb = _KRB.get(int(frame.colorspace or 0), _KRB[default])
    kg = 1 - kr - kb
    # The chroma terms at chroma resolution, broadcast over each 2x2 block of luma.
    terms = (
        2 * (1 - kr) * vf,
        -(2 * kr * (1 - kr) * vf + 2 * kb * (1 - kb) * uf) / kg,
        2 * (1 - kb) * uf,
    )
    rgb = np.empty((h // 2, 2, w // 2, 2, 3), np.float32)
    for i, term in enumerate(terms):
        rgb[..., i] = yf + term[:, None, :, None]
    return np.asarray(np.clip(rgb.reshape(h, w, 3), 0.0, 1.0, out=rgb.reshape(h, w, 3)))


def _from_rgb(rgb: np.ndarray, matrix: int, depth: int, like: VideoFrame) -> VideoFrame:
    """R'G'B' (0..1) to a limited-range 4:2:0 frame with `like`'s size and pts."""
    kr, kb = _KRB[matrix]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - y) / (2 * (1 - kb))
    cr = (r - y) / (2 * (1 - kr))
    h, w = y.shape
    shift = depth - 8

    def sub(c: np.ndarray) -> np.ndarray:  # 2x2 average (even sizes)
        return np.asarray(
            c[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        )

    dtype = np.uint16 if depth == 10 else np.uint8
    yq = np.rint((16 + 219 * y) * (1 << shift))
    uq = np.rint((128 + 224 * sub(cb)) * (1 << shift))
    vq = np.rint((128 + 224 * sub(cr)) * (1 << shift))
    top = (1 << depth) - 1
    flat = np.concatenate([np.clip(p, 0, top).astype(dtype).ravel() for p in (yq, uq, vq)])
    fmt = "yuv420p10le" if depth == 10 else "yuv420p"
    out = VideoFrame.from_ndarray(flat.reshape(h * 3 // 2, w), format=fmt)
    out.pts, out.time_base = like.pts, like.time_base or Fraction(1, 90_000)
    return out
