"""Rungs that share learned passes share their work: an AI 8K ladder from a small source
runs its first x2 pass (the 4K rung's) once per frame, not twice. Counted through the
real ESPCN on tiny frames, with outputs equal to those made rung by rung."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from actors.media_worker import SegmentJob, SegmentWorker
from lumalive.settings import Settings
from media.ladder import Rendition
from media.segmenter import Segmenter
from media.shared_passes import SharedPassHook
from media.storage import LocalStorage
from models.enhance import EnhanceConfig, Enhancer
from models.superres import ESPCN, load_pretrained
from tests.utils.media import synthetic


class Windows:
    """Counts the windows (tiles) the real network sees, through a forward hook."""

    def __init__(self, model: ESPCN) -> None:
        self.count = 0
        model.register_forward_hook(self._seen)

    def _seen(self, _: Any, inputs: tuple[torch.Tensor, ...], __: Any) -> None:
        self.count += inputs[0].shape[0]


@pytest.fixture
def counted() -> tuple[Enhancer, Windows]:
    model = load_pretrained(torch.device("cpu"))
    windows = Windows(model)
    # Tiles larger than the frames: one window per frame per pass.
    return Enhancer("cpu", model, max_batch=1), windows


def test_an_8k_ladder_runs_each_x2_pass_once_per_frame(counted: tuple[Enhancer, Windows]) -> None:
    enhancer, windows = counted
    frames = np.random.default_rng(3).integers(0, 256, (2, 24, 40, 3), dtype=np.uint8)
    configs = [
        EnhanceConfig(target_size=(160, 96)),  # "8K": two passes
        EnhanceConfig(target_size=(80, 48)),  # "4K": the first of them
        EnhanceConfig(target_size=(20, 12), upscale=False),  # a rung below: no network
        EnhanceConfig(target_size=(80, 48), denoise=True, sharpen=True),  # its own chain
        EnhanceConfig(target_size=(160, 96)),  # "8K-hdr": 8K's frames (mapped later)
    ]
    one_by_one = [enhancer.enhance(frames, c) for c in configs]
    assert windows.count == 2 * (2 + 1 + 0 + 1 + 2)
    windows.count = 0
    together = enhancer.enhance_many(frames, configs)
    assert windows.count == 2 * (2 + 1)  # per frame: two passes, plus the denoised one
    assert together[-1] is together[0]
    for alone, shared in zip(one_by_one, together, strict=True):
        assert np.array_equal(alone, shared)


def _decoded(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data), format="mpegts") as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


class OneByOne:
    """An enhancer with `enhance` only (the enhancer pool's shape): rung by rung."""

    def __init__(self, enhancer: Enhancer) -> None:
        self.enhance = enhancer.enhance


def test_the_worker_makes_each_pass_once_and_the_same_frames(
    tmp_path: Path, counted: tuple[Enhancer, Windows]
) -> None:
    enhancer, windows = counted
    clip = synthetic(frames=2, gop=2, size=(64, 36), fps=2, audio=False)
    [source] = list(Segmenter(io.BytesIO(clip), format="flv"))
    ladder = (
        Rendition("x4", 256, 144, 400, fps=2, needs_upscale=True, upscale_passes=2),
        Rendition("x2", 128, 72, 300, fps=2, needs_upscale=True, upscale_passes=1),
        Rendition("src", 64, 36, 200, fps=2),
    )
    settings = Settings(data_dir=tmp_path, x264_preset="ultrafast", encoder_hardware="off")
    made: dict[str, dict[str, list[np.ndarray]]] = {}
    for label, factory in (("shared", lambda: enhancer), ("alone", lambda: OneByOne(enhancer))):
        windows.count = 0
        storage = LocalStorage(tmp_path / label)
        worker = SegmentWorker(settings, storage=storage, enhancer_factory=factory)
        job = SegmentJob("s", 0, ladder, source.frames, moderation_fps=0, enhance=True)
        result = worker.process(job, source.data)
        assert result.error is None
        made[label] = {e.name: _decoded(storage.get(e.key)) for e in result.renditions}
        assert windows.count == 2 * (3 if label == "alone" else 2)
    for r in ladder:
        frames = made["shared"][r.name]
        assert len(frames) == 2 and frames[0].shape == (r.height, r.width, 3)
        assert all(np.array_equal(a, b) for a, b in zip(frames, made["alone"][r.name], strict=True))


def test_the_shared_hook_makes_a_batch_once_even_from_copies_and_again_for_repeats() -> None:
    """FrameFanout hands every rung the same batch; a copy of it (same content) is still
    that batch, and a later batch of the same content (a still picture) is a new one."""
    rungs = [Rendition("x4", 16, 8, 100, needs_upscale=True), Rendition("x2", 8, 4, 100)]
    calls: list[list[str]] = []

    def run_many(frames: np.ndarray, renditions: Any) -> list[np.ndarray]:
        calls.append([r.name for r in renditions])
        return [
            np.full((len(frames), r.height, r.width, 3), len(calls), np.uint8) for r in renditions
        ]

    def single(frames: np.ndarray, r: Rendition) -> np.ndarray:
        return np.zeros((len(frames), r.height, r.width, 3), np.uint8)

    hook = SharedPassHook(run_many, rungs, single)
    batch = np.ones((2, 4, 4, 3), np.uint8)
    assert hook(batch, rungs[0]).shape == (2, 8, 16, 3)
    assert hook(batch.copy(), rungs[1])[0, 0, 0, 0] == 1 and calls == [["x4", "x2"]]
    assert hook(batch, rungs[0])[0, 0, 0, 0] == 2 and len(calls) == 2  # the next batch
    other = Rendition("x3", 12, 6, 100)
    assert hook(batch, other).max() == 0 and len(calls) == 2  # not shared: made alone
