"""Behavioural tests of the enhancement pipeline on real frames: directional and invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.enhance import EnhanceConfig, Enhancer, Size, estimate_noise_sigma
from models.quality import psnr, rgb_to_luma
from models.train_superres import decode_frames, default_media_path


@pytest.fixture(scope="module")
def enhancer() -> Enhancer:
    torch.set_num_threads(1)
    return Enhancer("cpu")


@pytest.fixture(scope="module")
def frame_720p() -> np.ndarray:
    # A held-out frame (the last 32 are never trained on).
    return decode_frames(default_media_path())[-1]


def _to_nchw(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


def _downscale(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    t = F.interpolate(_to_nchw(frame[None]), size=(height, width), mode="bicubic", antialias=True)
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()[0]


def _edge_energy(frames: np.ndarray) -> float:
    y = rgb_to_luma(_to_nchw(frames))
    lap = F.conv2d(
        y, torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    )
    return float(lap.pow(2).mean())


def test_upscales_360p_to_720p_better_than_bicubic(
    enhancer: Enhancer, frame_720p: np.ndarray
) -> None:
    small = _downscale(frame_720p, 640, 360)
    learned = enhancer.enhance([small], EnhanceConfig(upscale=True, target_size=Size(1280, 720)))
    plain = enhancer.enhance([small], EnhanceConfig(upscale=False, target_size=Size(1280, 720)))
    assert learned.shape == (1, 720, 1280, 3)
    assert learned.dtype == np.uint8
    truth = _to_nchw(frame_720p[None])
    assert psnr(_to_nchw(learned), truth).item() > psnr(_to_nchw(plain), truth).item() + 0.5


def test_exact_target_when_not_a_power_of_two(enhancer: Enhancer, frame_720p: np.ndarray) -> None:
    small = _downscale(frame_720p, 160, 90)
    # x2.5: two network passes (x4), then an antialiased shrink to the exact size.
    up = enhancer.enhance([small, small], EnhanceConfig(target_size=(400, 225)))
    down = enhancer.enhance([small], EnhanceConfig(target_size=(80, 45)))
    assert up.shape == (2, 225, 400, 3)
    assert down.shape == (1, 45, 80, 3)


def test_list_array_and_tensor_inputs_agree(enhancer: Enhancer, frame_720p: np.ndarray) -> None:
    small = _downscale(frame_720p, 160, 90)
    cfg = EnhanceConfig(target_size=(320, 180), sharpen=True)
    from_list = enhancer.enhance([small, small], cfg)
    from_array = enhancer.enhance(np.stack([small, small]), cfg)
    from_tensor = enhancer.enhance(
        torch.from_numpy(np.stack([small, small])).permute(0, 3, 1, 2), cfg
    )
    assert np.array_equal(from_list, from_array)
    assert np.array_equal(from_list, from_tensor)
    # Frames in a batch are processed independently.
    assert np.array_equal(from_list[0], from_list[1])


def test_identity_config_leaves_frames_alone(enhancer: Enhancer, frame_720p: np.ndarray) -> None:
    small = _downscale(frame_720p, 320, 180)
    out = enhancer.enhance([small], EnhanceConfig(upscale=False))
    # Only the YCbCr round trip and 8-bit rounding stand between input and output.
    assert np.abs(out[0].astype(int) - small.astype(int)).max() <= 1


def test_denoise_moves_a_noisy_frame_towards_the_clean_one(
    enhancer: Enhancer, frame_720p: np.ndarray
) -> None:
    clean = _downscale(frame_720p, 640, 360)
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0.0, 10.0, clean.shape), 0, 255).round().astype(np.uint8)
    denoised = enhancer.enhance([noisy], EnhanceConfig(upscale=False, denoise=True))
    truth = _to_nchw(clean[None])
    before = psnr(_to_nchw(noisy[None]), truth).item()
    after = psnr(_to_nchw(denoised), truth).item()
    assert after > before + 2.0, (before, after)


def test_noise_estimate_recovers_known_sigma() -> None:
    gen = torch.Generator().manual_seed(0)
    flat = torch.full((1, 1, 256, 256), 0.5)
    for sigma in (0.01, 0.04):
        noisy = flat + sigma * torch.randn(flat.shape, generator=gen)
        assert estimate_noise_sigma(noisy).item() == pytest.approx(sigma, rel=0.1)


def test_sharpen_increases_edge_energy(enhancer: Enhancer, frame_720p: np.ndarray) -> None:
    src = _downscale(frame_720p, 640, 360)
    sharp = enhancer.enhance([src], EnhanceConfig(upscale=False, sharpen=True))
    sharper = enhancer.enhance(
        [src], EnhanceConfig(upscale=False, sharpen=True, sharpen_amount=1.0)
    )
    assert _edge_energy(src[None]) < _edge_energy(sharp) < _edge_energy(sharper)


def test_rejects_mixed_sizes_and_bad_input(enhancer: Enhancer) -> None:
    a = np.zeros((90, 160, 3), np.uint8)
    b = np.zeros((45, 80, 3), np.uint8)
    with pytest.raises(ValueError):
        enhancer.enhance([a, b], EnhanceConfig())
    with pytest.raises(ValueError):
        enhancer.enhance([a.astype(np.float32)], EnhanceConfig())
    assert enhancer.enhance([], EnhanceConfig()).shape[0] == 0
