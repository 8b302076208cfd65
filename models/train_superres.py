"""Train and evaluate the x2 luma ESPCN on real frames of the Big Buck Bunny clip.

    python -m models.train_superres --out models/weights/espcn_x2_y.pt   # train, then evaluate
    python -m models.train_superres --eval-only     # evaluate the shipped weights only

Invariants:
- The last ``--holdout`` frames (a contiguous block) are never seen in training; the
  reported PSNR/SSIM are on those frames only, and nothing is selected on them.
- Low-resolution inputs are made the way evaluation makes them: the whole HR frame is
  downscaled with antialiased bicubic and quantised to 8 bits, then aligned crops are
  cut from both, so there are no crop-border effects that evaluation would not see.
- Given the same seed, media and torch build, training is bit-for-bit repeatable
  (single thread, deterministic algorithms, one seeded generator for all sampling).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.quality import psnr, rgb_to_luma, ssim
from models.superres import ESPCN, WEIGHTS_FILE, load_pretrained

__all__ = [
    "EvalResult",
    "TrainConfig",
    "decode_frames",
    "default_media_path",
    "downscale",
    "evaluate",
    "frames_to_luma",
    "main",
    "split_holdout",
    "train",
]

_MEDIA_NAME = Path("media") / "bigbuckbunny.mp4"


def default_media_path() -> Path:
    """The shared test clip: ``$LUMALIVE_SHARED_DIR``, ``shared/`` inside the checkout,
    or beside it (as in CI)."""
    repo = Path(__file__).resolve().parents[1]
    candidates = [repo / "shared" / _MEDIA_NAME, repo.parent / "shared" / _MEDIA_NAME]
    if os.environ.get("LUMALIVE_SHARED_DIR"):
        candidates.insert(0, Path(os.environ["LUMALIVE_SHARED_DIR"]) / _MEDIA_NAME)
    for path in candidates:
        if path.is_file():
            return path
    return candidates[-1]


def decode_frames(path: str | Path, limit: int | None = None) -> np.ndarray:
    """Decode video frames as a ``(T, H, W, 3)`` uint8 RGB array."""
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if limit is not None and len(frames) >= limit:
                break
    if not frames:
        raise ValueError(f"no video frames decoded from {path}")
    return np.stack(frames)


def split_holdout(frames: np.ndarray, holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """Split into (train, held-out) with the held-out block at the end of the clip."""
    if not 0 < holdout < len(frames):
        raise ValueError(f"holdout must be in 1..{len(frames) - 1}, got {holdout}")
    return frames[:-holdout], frames[-holdout:]


def frames_to_luma(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` RGB to float ``(T, 1, H, W)`` Y in [0, 1], cropped to even size."""
    t, h, w, _ = frames.shape
    rgb = torch.from_numpy(frames[:, : h - h % 2, : w - w % 2]).permute(0, 3, 1, 2)
    return rgb_to_luma(rgb.float() / 255.0)


def _quantise(x: torch.Tensor) -> torch.Tensor:
    # Frames travel as 8-bit; train and evaluate on what the model will really see.
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def downscale(hr: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """Antialiased bicubic downscale by ``scale``, quantised to 8 bits."""
    lr = F.interpolate(
        hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False
    )
    return _quantise(lr)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    steps: int = 3000
    batch_size: int = 16
    patch: int = 64  # HR patch side; the LR patch is patch // 2
    lr: float = 1e-3
    holdout: int = 32
    features: int = 64
    hidden: int = 32


@dataclass(frozen=True)
class EvalResult:
    frames: int
    psnr_model: float
    psnr_bicubic: float
    ssim_model: float
    ssim_bicubic: float

    @property
    def psnr_gain(self) -> float:
        return self.psnr_model - self.psnr_bicubic

    @property
    def ssim_gain(self) -> float:
        return self.ssim_model - self.ssim_bicubic

    def summary(self) -> str:
        return (
            f"held-out frames: {self.frames}\n"
            f"PSNR-Y  bicubic {self.psnr_bicubic:.3f} dB   model {self.psnr_model:.3f} dB"
            f"   gain {self.psnr_gain:+.3f} dB\n"
            f"SSIM-Y  bicubic {self.ssim_bicubic:.4f}      model {self.ssim_model:.4f}"
            f"      gain {self.ssim_gain:+.4f}"
        )


def _sample_batch(
    hr: torch.Tensor, lr: torch.Tensor, cfg: TrainConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = hr.shape
    p, q = cfg.patch, cfg.patch // 2
    idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
    ys = torch.randint(0, (h - p) // 2 + 1, (cfg.batch_size,), generator=gen)
    xs = torch.randint(0, (w - p) // 2 + 1, (cfg.batch_size,), generator=gen)
    aug = torch.randint(0, 8, (cfg.batch_size,), generator=gen)
    lr_b, hr_b = [], []
    for i, y, x, a in zip(idx.tolist(), ys.tolist(), xs.tolist(), aug.tolist(), strict=True):
        lo = lr[i, :, y : y + q, x : x + q]
        hi = hr[i, :, 2 * y : 2 * y + p, 2 * x : 2 * x + p]
        # Dihedral augmentation (4 rotations x optional flip): texture has no preferred way up.
        if a & 4:
            lo, hi = lo.flip(-1), hi.flip(-1)
        lo, hi = torch.rot90(lo, a & 3, (-2, -1)), torch.rot90(hi, a & 3, (-2, -1))
        lr_b.append(lo)
        hr_b.append(hi)
    return torch.stack(lr_b), torch.stack(hr_b)


def train(train_luma: torch.Tensor, cfg: TrainConfig, progress: bool = True) -> ESPCN:
    """Fit an ESPCN on HR luma frames ``(T, 1, H, W)``; deterministic given ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    lr_frames = downscale(train_luma)
    model = ESPCN(features=cfg.features, hidden=cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # Cosine decay to 1% of the start rate: settles the weights without a tuned schedule.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr * 0.01)
    model.train()
    bar = tqdm(range(cfg.steps), disable=not progress, desc="train", mininterval=2.0)
    running = 0.0
    for step in bar:
        lo, hi = _sample_batch(train_luma, lr_frames, cfg, gen)
        # L1 rather than MSE: it keeps the gradient alive on the many near-flat patches
        # of a cartoon, and trains to higher PSNR in practice for SR.
        loss = F.l1_loss(model(lo), hi)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it untyped
        opt.step()
        sched.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 50 == 0:
            bar.set_postfix(l1=f"{running:.5f}")
    model.eval().requires_grad_(False)
    return model


@torch.inference_mode()
def evaluate(model: ESPCN, hr_luma: torch.Tensor, chunk: int = 4) -> EvalResult:
    """PSNR/SSIM on Y of model vs bicubic x2, both against the HR frames, both 8-bit."""
    pm, pb, sm, sb = [], [], [], []
    for start in range(0, len(hr_luma), chunk):
        hr = hr_luma[start : start + chunk]
        lr = downscale(hr)
        bicubic = _quantise(F.interpolate(lr, scale_factor=2, mode="bicubic", align_corners=False))
        pred = _quantise(model(lr))
        pm.append(psnr(pred, hr))
        pb.append(psnr(bicubic, hr))
        sm.append(ssim(pred, hr))
        sb.append(ssim(bicubic, hr))
    return EvalResult(
        frames=len(hr_luma),
        psnr_model=torch.cat(pm).mean().item(),
        psnr_bicubic=torch.cat(pb).mean().item(),
        ssim_model=torch.cat(sm).mean().item(),
        ssim_bicubic=torch.cat(sb).mean().item(),
    )


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    d = TrainConfig()
    ap = argparse.ArgumentParser(
        prog="python -m models.train_superres", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--media", type=Path, default=default_media_path(), help="source clip")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "weights" / WEIGHTS_FILE)
    ap.add_argument(
        "--eval-only", action="store_true", help="evaluate the shipped weights, do not train"
    )
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--patch", type=int, default=d.patch, help="HR patch side (even)")
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument(
        "--holdout", type=int, default=d.holdout, help="last N frames kept out of training"
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1 = deterministic, polite)"
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    frames = decode_frames(args.media)
    train_frames, held_frames = split_holdout(frames, args.holdout)
    print(
        f"{args.media}: {len(frames)} frames, training on 0..{len(train_frames) - 1}, "
        f"held out {len(train_frames)}..{len(frames) - 1}"
    )
    held = frames_to_luma(held_frames)
    if args.eval_only:
        model = load_pretrained("cpu")
    else:
        if args.patch % 2:
            raise SystemExit("--patch must be even")
        cfg = TrainConfig(
            seed=args.seed,
            steps=args.steps,
            batch_size=args.batch_size,
            patch=args.patch,
            lr=args.lr,
            holdout=args.holdout,
        )
        started = time.perf_counter()
        model = train(frames_to_luma(train_frames), cfg)
        elapsed = time.perf_counter() - started
        print(f"trained {cfg.steps} steps in {elapsed:.0f} s")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            **asdict(cfg),
            "arch": "ESPCN-x2-Y-residual",
            "media": args.media.name,
            "train_frames": len(train_frames),
            "torch": str(torch.__version__),  # a plain str: weights_only loads refuse TorchVersion
        }
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save({"state_dict": state, "meta": meta}, args.out)
        print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    print(evaluate(model, held).summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
