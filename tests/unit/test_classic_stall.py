"""Encode once when the streaming encoder stalls: a classic segment not made within
the wait hands the LL rungs back to the pool for the rest of the input, as a failed
encoder does (`actors.classic_handoff`), so later segments do not each wait for it."""

from __future__ import annotations

import asyncio
import time

from actors.classic_handoff import ClassicHandoff
from lumalive.settings import Settings
from media.llhls.classic import ClassicSegment

STREAM = {"quality": "1080p", "ai_features": {}}


def _segment(sequence: int) -> ClassicSegment:
    return ClassicSegment("360p", sequence, b"ts", 10.0, 2.0, 60, 640, 360, "avc1.42c01e")


async def test_a_stalled_encoder_hands_its_rungs_back_to_the_pool() -> None:
    handoff = ClassicHandoff(STREAM, Settings(), lambda puts: None)
    handoff.start()
    handoff.made([_segment(0)])  # it ran, then stalled: nothing after segment 0
    assert (await handoff.classic(0, 1.0)) is not None and handoff.carries
    asked = [asyncio.create_task(handoff.classic(s, 0.3)) for s in (1, 2)]
    assert await asyncio.gather(*asked) == [None, None]
    assert not handoff.carries  # the pool takes the LL rungs back
    began = time.monotonic()
    assert (await handoff.classic(3, 5.0)) is None
    assert time.monotonic() - began < 0.1  # answered at once: no wait per segment
    handoff.start()  # the next input's encoder session carries them again
    assert handoff.carries


async def test_an_encoder_on_time_keeps_its_rungs() -> None:
    handoff = ClassicHandoff(STREAM, Settings(), lambda puts: None)
    handoff.start()
    asked = asyncio.create_task(handoff.classic(0, 5.0))
    await asyncio.sleep(0.05)
    handoff.made([_segment(0)])
    assert (await asked) == {"360p": _segment(0)} and handoff.carries
