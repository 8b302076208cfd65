"""The x2 luma ESPCN, its shipped weights, its training script and the PSNR/SSIM it is judged by."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import torch

from models.quality import psnr, rgb_to_ycbcr, ssim, ycbcr_to_rgb
from models.superres import ESPCN, WEIGHTS_FILE, load_pretrained, pretrained_meta
from models.train_superres import (
    TrainConfig,
    decode_frames,
    default_media_path,
    evaluate,
    frames_to_luma,
    split_holdout,
    train,
)

HOLDOUT = 32


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return decode_frames(default_media_path())


@pytest.fixture(scope="module")
def model() -> ESPCN:
    torch.set_num_threads(1)
    return load_pretrained("cpu")


def test_clip_is_the_one_the_weights_were_trained_on(clip: np.ndarray) -> None:
    assert clip.shape == (132, 720, 1280, 3)
    meta = pretrained_meta()
    # The held-out block the numbers in docs/models.md come from was never trained on.
    assert meta["holdout"] == HOLDOUT
    assert meta["train_frames"] == len(clip) - HOLDOUT


def test_model_beats_bicubic_on_held_out_frames(clip: np.ndarray, model: ESPCN) -> None:
    _, held = split_holdout(clip, HOLDOUT)
    # First and last frame of the held-out block: nearest to and farthest from training.
    result = evaluate(model, frames_to_luma(held[[0, -1]]))
    assert result.psnr_gain > 1.0, result.summary()
    assert result.ssim_gain > 0.0, result.summary()


def test_output_shape_and_dtype(model: ESPCN) -> None:
    y = torch.rand(2, 1, 45, 80)
    with torch.inference_mode():
        out = model(y)
    assert out.shape == (2, 1, 90, 160)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_weights_file_is_small() -> None:
    ref = resources.files("models") / "weights" / WEIGHTS_FILE
    assert len(ref.read_bytes()) < 1_000_000


def test_training_is_deterministic_given_seed(clip: np.ndarray) -> None:
    torch.set_num_threads(1)
    luma = frames_to_luma(clip[:2, :128, :128])
    cfg = TrainConfig(seed=7, steps=3, batch_size=2, patch=32)
    a = train(luma, cfg, progress=False).state_dict()
    b = train(luma, cfg, progress=False).state_dict()
    c = train(
        luma, TrainConfig(seed=8, steps=3, batch_size=2, patch=32), progress=False
    ).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_untrained_model_starts_at_bicubic() -> None:
    # The tiny last layer makes a fresh network a (nearly) plain bicubic upscaler.
    torch.manual_seed(0)
    y = torch.rand(1, 1, 32, 32)
    bicubic = torch.nn.functional.interpolate(
        y, scale_factor=2, mode="bicubic", align_corners=False
    )
    with torch.inference_mode():
        out = ESPCN()(y)
    assert (out - bicubic).abs().max() < 0.01


def test_ycbcr_round_trip() -> None:
    rgb = torch.rand(2, 3, 8, 8)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-5)
    grey = torch.full((1, 3, 2, 2), 0.3)
    # Grey has no chroma: Cb = Cr = 0.5, Y = the grey level.
    assert torch.allclose(
        rgb_to_ycbcr(grey), torch.tensor([0.3, 0.5, 0.5]).view(1, 3, 1, 1), atol=1e-6
    )


def test_psnr_known_value() -> None:
    a = torch.full((1, 1, 16, 16), 0.5)
    # MSE 1e-4 on a unit range is exactly 40 dB.
    assert psnr(a + 0.01, a).item() == pytest.approx(40.0, abs=1e-3)


def test_ssim_is_one_for_identical_and_drops_with_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(1, 1, 64, 64, generator=gen)
    noisy = (img + 0.1 * torch.randn(img.shape, generator=gen)).clamp(0, 1)
    noisier = (img + 0.2 * torch.randn(img.shape, generator=gen)).clamp(0, 1)
    assert ssim(img, img).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim(img, img).item() > ssim(noisy, img).item() > ssim(noisier, img).item()


def test_metrics_take_rgb_as_luma() -> None:
    rgb = torch.rand(1, 3, 32, 32)
    other = torch.rand(1, 3, 32, 32)
    y, y2 = rgb_to_ycbcr(rgb)[:, :1], rgb_to_ycbcr(other)[:, :1]
    assert psnr(rgb, other).item() == pytest.approx(psnr(y, y2).item(), rel=1e-5)
    assert ssim(rgb, other).item() == pytest.approx(ssim(y, y2).item(), rel=1e-5)
