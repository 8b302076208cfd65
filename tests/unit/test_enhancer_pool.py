"""The enhancer pool's batching core and the enhancer's bounded memory, without Ray:
tiles change nothing, chunks change nothing, and several streams' requests share one
model call while each gets exactly its own frames back."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from actors.frame_batcher import EnhancerService, FrameBatcher
from models.enhance import EnhanceConfig, Enhancer, Size
from models.footprint import enhance_working_set_bytes


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    torch.set_num_threads(1)
    return np.random.default_rng(7).integers(0, 256, (3, 90, 150, 3), dtype=np.uint8)


def test_tiles_and_chunks_give_the_same_frames_as_one_whole_pass(frames: np.ndarray) -> None:
    whole = Enhancer("cpu", tile=4096, max_batch=1, max_pixels=10**9)
    # 40-px tiles (windows of 56) in batches of 3, one output frame at a time.
    tiled = Enhancer("cpu", tile=40, max_batch=3, max_pixels=1)
    for cfg in (
        EnhanceConfig(target_size=Size(300, 180)),
        EnhanceConfig(target_size=Size(600, 360), denoise=True, sharpen=True),  # two passes
    ):
        assert np.array_equal(tiled.enhance(frames, cfg), whole.enhance(frames, cfg))


def test_the_working_set_grows_with_the_target_not_with_the_batch() -> None:
    e = Enhancer("cpu")
    four_k, eight_k = e.working_set_bytes(Size(3840, 2160)), e.working_set_bytes(Size(7680, 4320))
    assert 200 << 20 < four_k < 1 << 30  # measured 492-728 MB (docs/models.md)
    assert 2 * four_k < eight_k < 3 << 30  # measured 1.26 GB
    # fp16 tiles on CUDA hold half the network's bytes.
    assert enhance_working_set_bytes((3840, 2160), half=True) < four_k


async def test_requests_of_several_streams_share_one_call_and_get_their_own_frames() -> None:
    calls: list[int] = []

    def run(batch: np.ndarray, scale: int) -> np.ndarray:
        calls.append(len(batch))
        return batch * scale

    batcher = FrameBatcher(run, window_s=0.05)
    a, b = np.full((2, 4, 4, 3), 1), np.full((3, 4, 4, 3), 2)
    other = np.full((1, 8, 8, 3), 3)  # another size: its own call
    got = await asyncio.gather(
        batcher.submit(a, 10, key=("x", a.shape[1:])),
        batcher.submit(b, 10, key=("x", b.shape[1:])),
        batcher.submit(other, 10, key=("x", other.shape[1:])),
    )
    assert sorted(calls) == [1, 5]
    assert [g.shape[0] for g in got] == [2, 3, 1]
    assert (got[0] == 10).all() and (got[1] == 20).all() and (got[2] == 30).all()


async def test_a_failing_call_fails_each_of_its_requests_and_the_next_one_runs() -> None:
    def run(batch: np.ndarray, arg: str) -> np.ndarray:
        if arg == "bad":
            raise RuntimeError("model failed")
        return batch

    batcher = FrameBatcher(run, window_s=0.01, max_frames=4)
    results = await asyncio.gather(
        batcher.submit(np.zeros((2, 2)), "bad", key="bad"),
        batcher.submit(np.zeros((2, 2)), "bad", key="bad"),
        return_exceptions=True,
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert (await batcher.submit(np.ones((5, 2)), "ok", key="ok")).shape == (5, 2)  # > max


async def test_the_service_enhances_like_the_enhancer_it_wraps(frames: np.ndarray) -> None:
    enhancer = Enhancer("cpu", tile=64)
    service = EnhancerService(window_s=0.02, enhancer_factory=lambda: enhancer)
    cfg = EnhanceConfig(target_size=(300, 180), sharpen=True)
    one, two = await asyncio.gather(
        service.enhance(frames[:1], cfg), service.enhance(frames[1:], cfg)
    )
    assert service.stats()["enhance_calls"] == 1
    assert np.array_equal(np.concatenate([one, two]), enhancer.enhance(frames, cfg))
