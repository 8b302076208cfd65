"""Image-quality measures on the luma channel: PSNR and SSIM, plus the YCbCr conversion they use.

Invariants:
- Images are float tensors in [0, 1], shaped ``(N, C, H, W)`` or ``(C, H, W)``.
- The colour space is full-range BT.601 YCbCr (the JPEG convention); Cb and Cr are
  centred on 0.5 so all three channels stay in [0, 1]. The super-resolution network
  works on the same Y, so "PSNR on Y" measures exactly what the network changes.
- Metrics are computed per image and returned as a 1-D tensor of length N; callers
  average as they see fit.
"""

from __future__ import annotations

import torch

__all__ = ["psnr", "rgb_to_luma", "rgb_to_ycbcr", "ssim", "ycbcr_to_rgb"]

# Rows: Y, Cb, Cr. Full-range BT.601 (ITU-T T.871).
_RGB_TO_YCBCR = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.168735892, -0.331264108, 0.5],
        [0.5, -0.418687589, -0.081312411],
    ]
)
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)
_CHROMA_OFFSET = torch.tensor([0.0, 0.5, 0.5])


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        return x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected a (N, C, H, W) or (C, H, W) tensor, got shape {tuple(x.shape)}")
    return x


def _mix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return torch.einsum("oc,nchw->nohw", matrix.to(x.device, x.dtype), x)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] to full-range YCbCr with chroma centred on 0.5."""
    x = _as_batch(rgb)
    offset = _CHROMA_OFFSET.to(x.device, x.dtype).view(1, 3, 1, 1)
    return _mix(x, _RGB_TO_YCBCR) + offset


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`; the result is not clamped."""
    x = _as_batch(ycbcr)
    offset = _CHROMA_OFFSET.to(x.device, x.dtype).view(1, 3, 1, 1)
    return _mix(x - offset, _YCBCR_TO_RGB)


def rgb_to_luma(rgb: torch.Tensor) -> torch.Tensor:
    """The Y channel of :func:`rgb_to_ycbcr`, shaped ``(N, 1, H, W)``."""
    x = _as_batch(rgb)
    return _mix(x, _RGB_TO_YCBCR[:1])


def _luma_if_rgb(x: torch.Tensor) -> torch.Tensor:
    x = _as_batch(x)
    if x.shape[1] == 3:
        return rgb_to_luma(x)
    if x.shape[1] != 1:
        raise ValueError(f"expected 1 (Y) or 3 (RGB) channels, got {x.shape[1]}")
    return x


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB on Y, one value per image.

    RGB inputs are reduced to Y first; single-channel inputs are taken as Y already.
    """
    p = _luma_if_rgb(pred).double()
    t = _luma_if_rgb(target).double()
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: {tuple(p.shape)} vs {tuple(t.shape)}")
    mse = (p - t).pow(2).flatten(1).mean(dim=1)
    # Identical images have infinite PSNR; clamp so averages stay finite.
    return (10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-12))).float()


def _gaussian_1d(size: int, sigma: float, x: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).to(x.device, x.dtype)


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Valid-region separable Gaussian as sums of shifted slices.

    On CPU this is about twice as fast as two single-channel ``conv2d`` calls, which
    oneDNN handles poorly for one input channel.
    """
    k = g.numel()
    w = x.shape[-1] - k + 1
    h = x.shape[-2] - k + 1
    rows = sum((g[i] * x[..., i : i + w] for i in range(k)), torch.zeros_like(x[..., :w]))
    return sum(
        (g[i] * rows[..., i : i + h, :] for i in range(k)), torch.zeros_like(rows[..., :h, :])
    )


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Structural similarity on Y (Wang et al. 2004), one value per image.

    Uses the paper's 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03, and averages
    the SSIM map over the "valid" region (no padding), as the reference MATLAB code does.
    Computed in float32: with C2 = 9e-4 the variance cancellation error (~1e-8) is noise.
    """
    p = _luma_if_rgb(pred).float()
    t = _luma_if_rgb(target).float()
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: {tuple(p.shape)} vs {tuple(t.shape)}")
    g = _gaussian_1d(window_size, sigma, p)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_p = _blur(p, g)
    mu_t = _blur(t, g)
    var_p = _blur(p * p, g) - mu_p**2
    var_t = _blur(t * t, g) - mu_t**2
    cov = _blur(p * t, g) - mu_p * mu_t
    num = (2 * mu_p * mu_t + c1) * (2 * cov + c2)
    den = (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    return (num / den).flatten(1).mean(dim=1)
