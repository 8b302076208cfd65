"""The memory estimate of a media worker and the rungs refused over a budget."""

from __future__ import annotations

from pathlib import Path

from actors.media_memory import (
    fit_ladder,
    hook_batch,
    media_memory_bytes,
    within_memory,
    worker_memory_bytes,
)
from lumalive.settings import Settings
from media.ladder import build_ladder

GiB = 1 << 30


def test_the_estimate_grows_with_the_tier_and_with_ai() -> None:
    def need(tier: str, ai: bool) -> int:
        return media_memory_bytes(
            build_ladder(1920, 1080, tier, ai).renditions, ai, source=(1920, 1080)
        )

    assert need("1080p", False) < need("4K", True) < need("8K", True)
    assert need("4K", True) < 3 * GiB  # the bound tests/system/test_media_memory.py holds
    assert need("8K", True) < 8 * GiB
    # Hook batches shrink as the rendition grows: 8 frames at 1080p, 2 at 4K, 1 at 8K.
    assert [
        hook_batch(build_ladder(1920, 1080, t, True).renditions) for t in ("1080p", "4K", "8K")
    ] == [8, 2, 1]


def test_a_rung_over_the_budget_is_refused_from_the_top_and_the_last_is_kept() -> None:
    ladder = build_ladder(1920, 1080, "8K", True).renditions
    four_k = media_memory_bytes(ladder[1:], True, source=(1920, 1080))
    kept, refused = fit_ladder(ladder, True, source=(1920, 1080), budget_bytes=four_k)
    assert [r.name for r in kept] == [r.name for r in ladder[1:]]
    assert [r.name for r in refused] == ["8K"] and refused[0].needs_bytes > four_k
    kept, refused = fit_ladder(ladder, True, source=(1920, 1080), budget_bytes=1)
    assert [r.name for r in kept] == ["360p"] and len(refused) == len(ladder) - 1


def test_a_stream_gets_a_reason_and_an_event_for_each_refusal(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, media_worker_memory_mb=2500, media_enhancers=0)
    stream = {"id": "s", "ai_features": {"enhancement": True}}
    ladder = build_ladder(1920, 1080, "8K", True).renditions
    kept, reason, refused = within_memory(stream, settings, ladder, None, (1920, 1080))
    assert kept[0].name == "4K" and [r.name for r in refused] == ["8K"]
    assert reason is not None and "8K (7680x4320) refused" in reason
    event = refused[0].event(0)
    assert event["action"] == "rendition_refused" and event["budget_mb"] == 2500
    # Without AI the same budget holds the whole (source-sized) ladder.
    plain = build_ladder(1920, 1080, "8K", False).renditions
    assert within_memory({"ai_features": {}}, settings, plain, None, (1920, 1080))[2] == ()


def test_the_default_budget_is_the_largest_ladder_the_settings_allow(tmp_path: Path) -> None:
    full = worker_memory_bytes(Settings(data_dir=tmp_path))
    capped = worker_memory_bytes(Settings(data_dir=tmp_path, media_max_height=480))
    assert capped < 2 * GiB < full < 8 * GiB
    stream = {"ai_features": {"enhancement": True}}
    ladder = build_ladder(1920, 1080, "8K", True).renditions
    assert within_memory(stream, Settings(data_dir=tmp_path), ladder, None, (1920, 1080))[2] == ()
