"""Batch frame enhancement: denoise -> resize (learned x2 super-resolution) -> sharpen.

The order is deliberate: denoising first keeps the upscaler from enlarging noise into
blotches, and sharpening last works on the output grid, so its halo is one output
pixel wide whatever the scale.

Invariants:
- Work happens in float32 full-range YCbCr (``models.quality``): the network and the
  sharpener touch only Y, chroma is resized bicubically, the denoiser filters all three.
- The network runs channels_last on every device (oneDNN and cuDNN both prefer NHWC;
  about 30% faster on CPU here) and in fp16 on CUDA only; its convolutions are where
  the time goes. The classical filters stay fp32 because the local-variance
  arithmetic of the denoiser cancels catastrophically in fp16.
- Output is ``(N, H, W, 3)`` uint8 RGB on the host, one frame per input, in order.
- ``enhance_many`` makes several outputs of one batch (a ladder's rungs) with each
  stage once per frame: a denoise per distinct setting, each x2 pass once, the next
  pass fed from it (1080p -> 4K is the first pass of 1080p -> 8K). ``enhance`` is
  ``enhance_many`` of one config, so their outputs are the same bits.
- Bounded memory whatever the batch and the target: frames are enhanced
  ``max_pixels`` output pixels at a time, and the network sees tiles of at most
  ``tile`` (+ overlap) pixels a side, ``max_batch`` tiles per call; tiling does not
  change the result (the overlap covers the receptive field). A whole-frame network
  pass at 1080p would hold 64 channels x 2 MP x 4 bytes = 530 MB per frame, twice
  with its padded copy: eight frames of it were what an OOM kill was made of.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F

from models.footprint import (
    MAX_PIXELS_CPU,
    MAX_PIXELS_CUDA,
    TILE_CPU,
    TILE_CUDA,
    TILE_OVERLAP,
    enhance_working_set_bytes,
)
from models.quality import rgb_to_ycbcr, ycbcr_to_rgb
from models.superres import ESPCN, load_pretrained

__all__ = [
    "EnhanceConfig",
    "Enhancer",
    "Frames",
    "Size",
    "denoise",
    "estimate_noise_sigma",
    "unsharp_mask",
]

Frames = Sequence[np.ndarray] | np.ndarray | torch.Tensor


class Size(NamedTuple):
    """A frame size, width first as in "1280x720"."""

    width: int
    height: int


@dataclass(frozen=True)
class EnhanceConfig:
    """What to do to a batch.

    ``target_size`` is always honoured (``None`` keeps the source size). ``upscale``
    chooses how to enlarge: the learned x2 network (then bicubic to the exact size) or
    plain bicubic. Shrinking is always antialiased bicubic.
    """

    upscale: bool = True
    denoise: bool = False
    sharpen: bool = False
    target_size: Size | tuple[int, int] | None = None
    denoise_strength: float = 1.0  # multiplies the estimated noise variance
    sharpen_amount: float = 0.5
    sharpen_sigma: float = 1.0  # in output pixels
    max_sr_passes: int = 2  # caps the x2 passes for tiny sources (x4 at most)


class Enhancer:
    """Runs :class:`EnhanceConfig` pipelines on batches of frames on one device.

    Memory is bounded whatever the batch or the target size (see the module docstring):
    ``max_pixels`` output pixels of frames at a time, and the network on ``tile``-pixel
    tiles, ``max_batch`` tiles per forward pass. ``working_set_bytes`` says how much.
    ``compile=True`` wraps the network in ``torch.compile`` (tiles then always go in
    full batches, so it sees one shape).
    """

    def __init__(
        self,
        device: str = "cpu",
        model: ESPCN | None = None,
        max_batch: int = 8,
        *,
        tile: int | None = None,
        max_pixels: int | None = None,
        compile: bool = False,
    ) -> None:
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self._half = cuda
        net = model if model is not None else load_pretrained(self.device)
        net = net.to(self.device).eval().requires_grad_(False)
        if self._half:
            net = net.half()
        # Module.to accepts memory_format at run time; torch's stubs omit it.
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = net
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        # Tiles per forward pass: bounds the network's activations (64 channels).
        self.max_batch = max_batch
        self.tile = tile or (TILE_CUDA if cuda else TILE_CPU)
        self.max_pixels = max_pixels or (MAX_PIXELS_CUDA if cuda else MAX_PIXELS_CPU)
        if self.tile < 2 * TILE_OVERLAP or self.max_pixels < 1:
            raise ValueError(f"tile must be >= {2 * TILE_OVERLAP} and max_pixels >= 1")
        self.compiled = compile
        self._net: Callable[[torch.Tensor], torch.Tensor] = self.model
        if compile:
            mode = "max-autotune-no-cudagraphs" if cuda else None
            self._net = cast(Callable[[torch.Tensor], torch.Tensor], torch.compile(net, mode=mode))

    def working_set_bytes(self, target: Size | tuple[int, int]) -> int:
        """Peak bytes one ``enhance`` call to ``target`` adds on this enhancer's settings
        (``models.footprint.enhance_working_set_bytes``: the derivation is there)."""
        return enhance_working_set_bytes(
            (target[0], target[1]),
            tile=self.tile,
            tile_batch=self.max_batch,
            max_pixels=self.max_pixels,
            half=self._half,
        )

    def enhance(self, frames: Frames, config: EnhanceConfig) -> np.ndarray:
        """Enhance a batch; all frames in it must share one size.

        ``frames``: a list of (H, W, 3) uint8 RGB arrays, an (N, H, W, 3) uint8 array, or
        an (N, 3, H, W) tensor (uint8, or float in [0, 1]). Frames go through in chunks
        of at most ``max_pixels`` output pixels, so the batch size does not change the
        working set (the uint8 result itself is the caller's).
        """
        return self.enhance_many(frames, (config,))[0]

    @torch.inference_mode()
    def enhance_many(self, frames: Frames, configs: Sequence[EnhanceConfig]) -> list[np.ndarray]:
        """``[enhance(frames, c) for c in configs]``, each stage computed once per frame.

        A ladder's upscaled rungs share their first stages: 1080p -> 4K is the first x2
        pass of 1080p -> 8K. Per chunk of frames, each distinct denoise runs once and
        each x2 pass once, feeding the next pass; an output is finished (resized,
        sharpened) from the pass it needs as soon as that pass exists. Equal configs (an
        HDR twin's and its rung's) get one array, made once. The working set is the
        largest target's (chunks are sized for it); the outputs are the caller's.
        """
        unique = list(dict.fromkeys(configs))
        if len(unique) < len(configs):
            made = dict(zip(unique, self.enhance_many(frames, unique), strict=True))
            return [made[c] for c in configs]
        rgb = self._to_tensor(frames)
        if rgb.shape[0] == 0:
            return [np.empty((0, 0, 0, 3), dtype=np.uint8) for _ in configs]
        h, w = rgb.shape[-2:]
        targets = [
            Size(*c.target_size) if c.target_size is not None else Size(w, h) for c in configs
        ]
        if any(t.width < 1 or t.height < 1 for t in targets):
            raise ValueError(f"target_size must be positive, got {targets}")
        outs = [np.empty((rgb.shape[0], t.height, t.width, 3), dtype=np.uint8) for t in targets]
        largest = max((t.width * t.height for t in targets), default=1)
        step = max(1, self.max_pixels // largest)
        for start in range(0, rgb.shape[0], step):
            chunk = rgb[start : start + step]
            chunk = chunk.float() / 255.0 if chunk.dtype == torch.uint8 else chunk.float()
            for i, out in self._enhance_chunk(chunk, configs, targets):
                outs[i][start : start + len(chunk)] = out
        return outs

    def _enhance_chunk(
        self, rgb: torch.Tensor, configs: Sequence[EnhanceConfig], targets: Sequence[Size]
    ) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, output)`` per config: one denoise per distinct setting, then that
        denoised frame's x2 passes once each, up to the most any config needs."""
        ycc = rgb_to_ycbcr(rgb)
        del rgb
        h, w = ycc.shape[-2:]
        groups: dict[float | None, list[int]] = {}
        for i, c in enumerate(configs):
            groups.setdefault(c.denoise_strength if c.denoise else None, []).append(i)
        for strength, members in groups.items():
            level = ycc if strength is None else denoise(ycc, strength=strength)
            need = {i: _learned_passes(w, h, configs[i], targets[i]) for i in members}
            for passes in range(max(need.values()) + 1):
                if passes:
                    level = self._sr_pass(level)
                for i in (i for i in members if need[i] == passes):
                    yield i, _finish(level, configs[i], targets[i])
            del level

    def _sr_pass(self, ycc: torch.Tensor) -> torch.Tensor:
        """One learned x2 pass: the network on luma, bicubic on chroma."""
        return torch.cat([self._sr_luma(ycc[:, :1]), _bicubic(ycc[:, 1:], scale=2)], dim=1)

    def _to_tensor(self, frames: Frames) -> torch.Tensor:
        """Frames as an (N, 3, H, W) tensor on the device: uint8 as given (widened to
        float a chunk at a time), or float in [0, 1]."""
        if isinstance(frames, torch.Tensor):
            if frames.dim() != 4 or frames.shape[1] != 3:
                raise ValueError(f"expected an (N, 3, H, W) tensor, got {tuple(frames.shape)}")
            t = frames.to(self.device)
            return t if t.dtype == torch.uint8 else t.float()
        if len(frames) == 0:
            return torch.empty((0, 3, 0, 0), device=self.device)
        arr = frames if isinstance(frames, np.ndarray) else np.stack(list(frames))
        if arr.ndim != 4 or arr.shape[3] != 3 or arr.dtype != np.uint8:
            raise ValueError(
                f"expected (H, W, 3) uint8 RGB frames, got {arr.shape[1:]} {arr.dtype}"
            )
        # Upload as uint8 (a quarter of the bytes of float32), convert on the device.
        return torch.from_numpy(np.ascontiguousarray(arr)).to(self.device).permute(0, 3, 1, 2)

    def _sr_luma(self, y: torch.Tensor) -> torch.Tensor:
        """The network x2 on luma, tile by tile: the same result as on whole frames.

        Each tile's core is cut from a window ``TILE_OVERLAP`` pixels wider on every
        side that is not the frame's edge; the overlap exceeds the network's receptive
        radius (4 px: 5x5, 3x3, 3x3) and bicubic's (2 px), so a core's output sees
        exactly the pixels it would see in the whole frame. Windows are all one shape
        (shifted inward at the edges), so tiles of any frames batch together.
        """
        n, _, h, w = y.shape
        out = torch.empty((n, 1, 2 * h, 2 * w), device=y.device, dtype=torch.float32)
        rows, cols = _tiles(h, self.tile), _tiles(w, self.tile)
        jobs = [(i, r, c) for i in range(n) for r in rows for c in cols]
        for start in range(0, len(jobs), self.max_batch):
            chunk = jobs[start : start + self.max_batch]
            windows = torch.stack([y[i, :, r.window, c.window] for i, r, c in chunk])
            result = self._forward(windows)
            for k, (i, r, c) in enumerate(chunk):
                out[i, :, r.core_out, c.core_out] = result[k, :, r.core_in, c.core_in]
        return out

    def _forward(self, windows: torch.Tensor) -> torch.Tensor:
        count = windows.shape[0]
        if self.compiled and count < self.max_batch:  # one shape for the compiled graph
            pad = windows.new_zeros((self.max_batch - count, *windows.shape[1:]))
            windows = torch.cat([windows, pad])
        if self._half:
            windows = windows.half()
        windows = windows.contiguous(memory_format=torch.channels_last)
        return self._net(windows)[:count].float().clamp_(0.0, 1.0)


def _learned_passes(w: int, h: int, config: EnhanceConfig, target: Size) -> int:
    """The x2 passes a config takes from a ``w`` x ``h`` frame: while it is below the
    target, up to ``max_sr_passes``, and none unless it upscales to a target."""
    passes = 0
    learned = config.upscale and config.target_size is not None
    while learned and passes < config.max_sr_passes and (w < target.width or h < target.height):
        w, h, passes = 2 * w, 2 * h, passes + 1
    return passes


def _finish(ycc: torch.Tensor, config: EnhanceConfig, target: Size) -> np.ndarray:
    """An output from the pass it needs: bicubic to the exact target (antialiased when
    shrinking), sharpened, as uint8 RGB on the host. Leaves ``ycc`` untouched (a later
    pass or output may read it)."""
    h, w = ycc.shape[-2:]
    if config.target_size is not None and (h, w) != (target.height, target.width):
        shrinking = target.height < h or target.width < w
        ycc = F.interpolate(
            ycc,
            size=(target.height, target.width),
            mode="bicubic",
            align_corners=False,
            antialias=shrinking,
        )
    if config.sharpen:
        y = unsharp_mask(ycc[:, :1], amount=config.sharpen_amount, sigma=config.sharpen_sigma)
        ycc = torch.cat([y, ycc[:, 1:]], dim=1)
    out = ycbcr_to_rgb(ycc).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    del ycc
    return out.permute(0, 2, 3, 1).cpu().numpy()


class _Span(NamedTuple):
    """One tile along one axis: the window fed to the network, and where its core
    lands in the window's output (``core_in``) and in the frame's (``core_out``)."""

    window: slice
    core_in: slice
    core_out: slice


def _tiles(length: int, tile: int) -> list[_Span]:
    """Cores of ``tile`` pixels covering ``[0, length)`` once, each in a window of
    ``tile + 2 * TILE_OVERLAP`` (or the whole length) that keeps ``TILE_OVERLAP``
    pixels of context on every side that is not the frame's edge."""
    side = min(length, tile + 2 * TILE_OVERLAP)
    spans = []
    for c0 in range(0, length, tile):
        c1 = min(length, c0 + tile)
        w0 = min(max(0, c0 - TILE_OVERLAP), length - side)
        spans.append(
            _Span(slice(w0, w0 + side), slice(2 * (c0 - w0), 2 * (c1 - w0)), slice(2 * c0, 2 * c1))
        )
    return spans


def _bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def _box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    r = k // 2
    return F.avg_pool2d(F.pad(x, (r, r, r, r), mode="reflect"), k, stride=1)


def estimate_noise_sigma(x: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel std of additive white noise, shaped ``(N, C, 1, 1)``.

    Filters with the 3x3 mask [[1,-2,1],[-2,4,-2],[1,-2,1]] (Immerkaer 1996), which
    cancels constant and linear image content, then takes a robust scale of the result
    (median absolute value / 0.6745, as in Donoho's wavelet estimator) so that edges,
    the sparse large responses, do not inflate the estimate. The mask's L2 norm is 6.
    """
    n, c, h, w = x.shape
    m = torch.tensor(
        [[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], device=x.device, dtype=x.dtype
    )
    resp = F.conv2d(x.reshape(n * c, 1, h, w), m.view(1, 1, 3, 3))
    mad = resp.abs().flatten(1).median(dim=1).values
    return (mad / (0.6745 * 6.0)).view(n, c, 1, 1)


def denoise(x: torch.Tensor, strength: float = 1.0, window: int = 5) -> torch.Tensor:
    """Locally adaptive Wiener filter (Lee 1980), per channel, noise level estimated per frame.

    Each pixel becomes ``mean + max(var - nu, 0) / var * (x - mean)`` over a ``window``
    square: flat areas (local variance close to the noise variance ``nu``) collapse to
    their mean, edges and texture (variance far above ``nu``) pass nearly untouched.
    It is the linear least-squares estimate for additive white noise on a locally
    stationary image, needs no training data, and costs a few pooling passes.
    """
    nu = estimate_noise_sigma(x).pow(2) * strength
    mean = _box_mean(x, window)
    var = (_box_mean(x * x, window) - mean * mean).clamp_min(0.0)
    gain = (var - nu).clamp_min(0.0) / torch.maximum(var, nu).clamp_min(1e-12)
    return mean + gain * (x - mean)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    coords = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum()).to(x.device, x.dtype)
    k = g.numel()
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    h, w = x.shape[-2:]
    # Separable, as sums of shifted slices: faster on CPU than 1-channel conv2d.
    rows = sum((g[i] * xp[..., i : i + w] for i in range(k)), torch.zeros_like(xp[..., :w]))
    return sum((g[i] * rows[..., i : i + h, :] for i in range(k)), torch.zeros_like(x))


def unsharp_mask(y: torch.Tensor, amount: float = 0.5, sigma: float = 1.0) -> torch.Tensor:
    """``y + amount * (y - gaussian(y, sigma))``: boosts detail finer than ``sigma``."""
    return y + amount * (y - _gaussian_blur(y, sigma))
