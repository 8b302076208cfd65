"""x2 super-resolution of the luma channel: an ESPCN that learns the residual over bicubic.

Why luma only: the eye resolves detail mostly in brightness, and our sources are H.264
4:2:0, so chroma already arrives at half resolution and has no detail to recover.
Working on Y costs a third of the RGB compute; Cb and Cr are upscaled bicubically by
the caller (:mod:`models.enhance`).

Why a residual: the network adds a correction to a bicubic upscale instead of
predicting the whole image, so it starts at bicubic quality and trains in minutes.

Invariants:
- Input ``(N, 1, H, W)`` luma in [0, 1]; output ``(N, 1, 2H, 2W)``, not clamped.
- The weights file in ``models/weights/`` is produced by :mod:`models.train_superres`
  and holds ``{"state_dict": ..., "meta": ...}``; ``meta`` records how it was trained.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ESPCN", "WEIGHTS_FILE", "load_pretrained", "pretrained_meta"]

WEIGHTS_FILE = "espcn_x2_y.pt"


class ESPCN(nn.Module):
    """Efficient sub-pixel CNN (Shi et al., CVPR 2016) for x2 luma, plus a bicubic skip.

    Layout as in the paper: 5x5 conv -> 3x3 conv -> 3x3 conv to ``scale**2`` channels,
    then a pixel shuffle. All convolutions run at the low resolution, which is what
    makes ESPCN cheap. Replicate padding avoids dark seams at the frame border.
    """

    scale = 2

    def __init__(self, features: int = 64, hidden: int = 32) -> None:
        super().__init__()
        self.features = features
        self.hidden = hidden
        self.body = nn.Sequential(
            nn.Conv2d(1, features, 5, padding=2, padding_mode="replicate"),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, hidden, 3, padding=1, padding_mode="replicate"),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, self.scale**2, 3, padding=1, padding_mode="replicate"),
        )
        self.shuffle = nn.PixelShuffle(self.scale)
        # Start as (almost) plain bicubic: a tiny last layer makes the residual ~0.
        last = self.body[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)  # type: ignore[arg-type]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(y, scale_factor=self.scale, mode="bicubic", align_corners=False)
        out: torch.Tensor = base + self.shuffle(self.body(y))
        return out


def load_pretrained(device: str | torch.device = "cpu") -> ESPCN:
    """The shipped x2 model on ``device``, in eval mode with gradients off."""
    blob = _read_weights()
    meta = blob.get("meta", {})
    model = ESPCN(features=int(meta.get("features", 64)), hidden=int(meta.get("hidden", 32)))
    model.load_state_dict(blob["state_dict"])
    model.eval().requires_grad_(False)
    return model.to(device)


def pretrained_meta() -> dict[str, Any]:
    """How the shipped weights were trained (seed, steps, frames used), from the file itself."""
    meta: dict[str, Any] = _read_weights().get("meta", {})
    return meta


def _read_weights() -> dict[str, Any]:
    ref = resources.files(__package__ or "models") / "weights" / WEIGHTS_FILE
    with ref.open("rb") as fh:
        # weights_only: the file is data, never code.
        blob: dict[str, Any] = torch.load(fh, map_location="cpu", weights_only=True)
    return blob
