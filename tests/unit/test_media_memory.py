"""The memory estimate of a media worker and the rungs refused over a budget."""

from __future__ import annotations

from pathlib import Path

from actors.media_memory import (
    DECODE_FRAMES,
    SEGMENT_COPIES,
    X264_FRAMES,
    fit_ladder,
    fit_to_budget,
    hook_batch,
    lowest_job_bytes,
    media_memory_bytes,
    within_memory,
    worker_memory_bytes,
)
from lumalive.settings import Settings
from media.ladder import build_ladder
from media.tier_plan import plan

GiB = 1 << 30
MiB = 1 << 20
SOURCE = (1920, 1080)


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


def test_the_lane_adds_the_lowest_rung_job_beside_the_upper_one() -> None:
    """With the lane a worker may run an upper-rung job and a lowest-rung job at once:
    never less than one job; for a 1080p ladder it adds what the lowest job holds that
    the whole job does not (a second decode, its segment's copies: its encoder is
    counted in either case), and more when the hook runs in the lowest job too."""
    for tier in ("1080p", "4K", "8K"):
        for ai in (False, True):
            ladder = build_ladder(*SOURCE, tier, ai).renditions
            off = media_memory_bytes(ladder, ai, source=SOURCE)
            assert media_memory_bytes(ladder, ai, source=SOURCE, lane=True) >= off
    ladder = build_ladder(*SOURCE, "1080p", False).renditions
    lowest = ladder[-1]
    assert lowest.name == "360p"
    decode = int(DECODE_FRAMES * SOURCE[0] * SOURCE[1] * 1.5)
    copies = SEGMENT_COPIES * (lowest.maxrate_kbps + lowest.audio_kbps) * 1000 // 8 * 2
    on = media_memory_bytes(ladder, False, source=SOURCE, lane=True)
    assert on - media_memory_bytes(ladder, False, source=SOURCE) == decode + copies
    encoder = int((X264_FRAMES + 1) * lowest.width * lowest.height * 1.5)  # and reformatter
    assert lowest_job_bytes(ladder, False, source=SOURCE) == decode + encoder + copies
    # Denoise hooks the lowest rung too: its own hook batches and enhancer call.
    hook = lowest_job_bytes(ladder, True, source=SOURCE) - (decode + encoder + copies)
    hooked, not_hooked = (
        media_memory_bytes(ladder, True, source=SOURCE, lane=True, lowest_ai=ai)
        for ai in (True, False)
    )
    assert hook > 0 and hooked - not_hooked == hook
    # One rung: nothing is split, nothing runs beside it.
    [one] = build_ladder(640, 360, "1080p", False).renditions
    assert media_memory_bytes([one], False, source=(640, 360), lane=True) == media_memory_bytes(
        [one], False, source=(640, 360)
    )


def test_the_lane_setting_reaches_the_budget_and_the_refusals(tmp_path: Path) -> None:
    lane, alone = (Settings(data_dir=tmp_path, media_lowest_lane=on) for on in (True, False))
    assert worker_memory_bytes(lane) > worker_memory_bytes(alone)
    ladder = build_ladder(*SOURCE, "1080p", False).renditions
    need = media_memory_bytes(ladder, False, source=SOURCE)  # moderation on, no AI
    budget = {"media_worker_memory_mb": -(-need // MiB)}
    for settings, refused in ((alone, []), (lane, ["1080p"])):
        settings = settings.model_copy(update=budget)
        got = within_memory({"ai_features": {}}, settings, ladder, None, SOURCE)[2]
        assert [r.name for r in got] == refused


def test_a_lowest_rung_job_may_run_beside_a_tile_job() -> None:
    renditions, _ = plan(*SOURCE, "20K", True)
    tiles = [r for r in renditions if r.tile is not None]
    big = max(tiles, key=lambda r: r.width * r.height)
    alone = media_memory_bytes([big], True, source=SOURCE)
    beside = lowest_job_bytes(renditions, True, source=SOURCE)
    assert tiles and beside > 0
    kept, _ = fit_to_budget(renditions, True, source=SOURCE, budget_bytes=alone)
    assert set(tiles) <= set(kept)
    kept, refused = fit_to_budget(renditions, True, source=SOURCE, budget_bytes=alone, lane=True)
    assert not set(tiles) & set(kept)
    assert refused[-1].name == f"{len(tiles)} tiles" and refused[-1].needs_bytes == alone + beside
    budget = alone + beside
    kept, _ = fit_to_budget(renditions, True, source=SOURCE, budget_bytes=budget, lane=True)
    assert set(tiles) <= set(kept)
